"""Seeded synthetic data in the Amazon Reviews 2023 JSONL format: the project's default data.

``generate_amazon2023(out_dir, cfg)`` writes ``<category>.jsonl`` (reviews) and
``meta_<category>.jsonl`` (items) and returns a manifest; ``generate_if_needed`` skips the work
when ``out_dir/_manifest.json`` records the same config and the files still hash the same.

The data has real coarse-to-fine structure (see :mod:`.generator_catalog`) and learnable,
drifting user behaviour (see :mod:`.generator_behaviour`). With ``defect_rate > 0`` a
deterministic fraction of lines is corrupted (see :mod:`.generator_defects`) and the manifest
counts each kind, with the 1-based line numbers, so reader tests can check their reject counts.

Scaling: ``scale`` multiplies both ``n_users`` and ``n_items`` (the number of reviews grows
linearly with the users: about ``n_users * scale * mean_reviews_per_user``); the category tree
and the brands do not scale. ``scale=21`` gives about 1M reviews.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict
from json.encoder import encode_basestring_ascii as _enc  # what json.dumps uses for str
from pathlib import Path

import numpy as np

from sapo_pipeline.data.config import GeneratorConfig
from sapo_pipeline.data.generator_behaviour import Interactions, review_text, simulate
from sapo_pipeline.data.generator_catalog import Catalog, build_catalog, lower_head, random_ids
from sapo_pipeline.data.generator_defects import DefectPlan, apply_review_defect, plan_defects
from sapo_pipeline.io_utils import sha256_file, write_chunks_atomically

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MANIFEST_NAME = "_manifest.json"
_CHUNK = 50_000


def generate_amazon2023(out_dir: Path, cfg: GeneratorConfig) -> dict:
    """Write the reviews and meta JSONL files and ``_manifest.json`` into ``out_dir``.

    Returns the manifest: file names, byte sizes, sha256 and line counts, row counts, the
    config as a dict, and the injected defects (counts per kind, per field, and line numbers).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(cfg.seed).spawn(5)
    rng_cat, rng_users, rng_order, rng_defects, rng_ids = (np.random.default_rng(s) for s in seeds)

    catalog = build_catalog(cfg, rng_cat)
    inter = simulate(cfg, catalog, rng_users)
    review_order = rng_order.permutation(len(inter.item))
    meta_order = rng_order.permutation(catalog.n_items)
    plan = plan_defects(cfg.defect_rate, len(inter.item), catalog.n_items, rng_defects)

    user_ids = random_ids(rng_ids, cfg.total_users, 28, "A")  # like the real 28-char ids
    reviews = write_chunks_atomically(out_dir / cfg.reviews_file,
                            _review_lines(catalog, inter, user_ids, review_order, plan))
    meta = write_chunks_atomically(out_dir / cfg.meta_file,
                         _meta_lines(cfg, catalog, inter, meta_order, plan))
    manifest = {
        "generator": __name__,
        "generator_version": GENERATOR_VERSION,
        "files": {"reviews": {"name": cfg.reviews_file, **reviews},
                  "meta": {"name": cfg.meta_file, **meta}},
        "rows": {
            "reviews": len(inter.item),
            "review_lines": reviews["lines"],
            "meta_lines": meta["lines"],
            "users": cfg.total_users,
            "items": catalog.n_items,
            "items_with_reviews": len(np.unique(inter.item)),
            "top_categories": len(catalog.category_names),
            "subtypes": len(catalog.subtype_names),
            "repeat_user_item_pairs": inter.repeat_pairs,
        },
        "config": asdict(cfg),
        **plan.manifest(),
    }
    body = json.dumps(manifest, indent=1, sort_keys=False).encode("utf-8")
    write_chunks_atomically(out_dir / MANIFEST_NAME, [body])
    logger.info("generated %d reviews / %d items into %s (defects: %s)",
                len(inter.item), catalog.n_items, out_dir, manifest["defects"])
    return manifest


def generate_if_needed(out_dir: Path, cfg: GeneratorConfig) -> dict:
    """Return the stored manifest if it matches ``cfg`` and the files' sha256; else regenerate."""
    out_dir = Path(out_dir)
    stored = _read_manifest(out_dir / MANIFEST_NAME)
    reason = _stale_reason(out_dir, cfg, stored)
    if reason is None:
        logger.info("synthetic data in %s is up to date; not regenerating", out_dir)
        return stored
    logger.info("regenerating synthetic data in %s: %s", out_dir, reason)
    return generate_amazon2023(out_dir, cfg)


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable manifest %s (%s); regenerating", path, exc)
        return None


def _stale_reason(out_dir: Path, cfg: GeneratorConfig, stored: dict | None) -> str | None:
    if not isinstance(stored, dict):
        return "no manifest"
    if stored.get("generator_version") != GENERATOR_VERSION:
        return "generator version changed"
    if stored.get("config") != asdict(cfg):
        return "config changed"
    for key, info in (stored.get("files") or {}).items():
        path = out_dir / str(info.get("name"))
        if not path.is_file() or path.stat().st_size != info.get("bytes"):
            return f"{key} file missing or resized"
        if sha256_file(path) != info.get("sha256"):
            return f"{key} file changed (sha256)"
    if set(stored.get("files") or {}) != {"reviews", "meta"}:
        return "manifest lists the wrong files"
    return None


def _review_lines(cat: Catalog, inter: Interactions, user_ids: list[str], order: np.ndarray,
                  plan: DefectPlan) -> Iterable[bytes]:
    """Review lines in file order (a seeded shuffle plus inserted duplicates), chunked."""
    heads = [lower_head(h) for h in cat.subtype_head]
    item_head = [heads[s] for s in cat.item_subtype.tolist()]
    src = plan.review_sources(order)  # clean-row index per output line
    cols = zip(inter.rating[src].tolist(), inter.item[src].tolist(), inter.user[src].tolist(),
               inter.timestamp_ms[src].tolist(), inter.helpful_vote[src].tolist(),
               inter.verified[src].tolist(), inter.variant[src].tolist(),
               inter.text_choice[src].tolist())
    kinds = plan.review_kinds.tolist()
    buf: list[bytes] = []
    for pos, (rating, it, u, ts, hv, vp, var, tpl) in enumerate(cols):
        title, text = review_text(item_head[it], cat.item_desc[it], cat.item_brand[it], tpl)
        asin, parent, uid = cat.variants[it][var], cat.parent_asin[it], user_ids[u]
        if kinds[pos] == 0:  # fast path; byte-identical to json.dumps(rec) (tests check it)
            buf.append((
                f'{{"rating": {rating!r}, "title": {_enc(title)}, "text": {_enc(text)}, '
                f'"images": [], "asin": "{asin}", "parent_asin": "{parent}", '
                f'"user_id": "{uid}", "timestamp": {ts}, "helpful_vote": {hv}, '
                f'"verified_purchase": {"true" if vp else "false"}}}').encode("ascii"))
        else:
            rec = {"rating": rating, "title": title, "text": text, "images": [], "asin": asin,
                   "parent_asin": parent, "user_id": uid, "timestamp": ts, "helpful_vote": hv,
                   "verified_purchase": vp}
            buf.append(apply_review_defect(rec, kinds[pos], plan.review_field[pos], pos))
        if len(buf) == _CHUNK:
            yield b"\n".join(buf) + b"\n"
            buf = []
    if buf:
        yield b"\n".join(buf) + b"\n"


def _meta_lines(cfg: GeneratorConfig, cat: Catalog, inter: Interactions, order: np.ndarray,
                plan: DefectPlan) -> Iterable[bytes]:
    """Meta lines in file order; average_rating / rating_number come from the clean reviews."""
    counts = np.bincount(inter.item, minlength=cat.n_items)
    sums = np.bincount(inter.item, weights=inter.rating, minlength=cat.n_items)
    avg = [round(a, 1) for a in (sums / np.maximum(counts, 1)).tolist()]  # 0.0 when no reviews
    counts = counts.tolist()
    empty = set(plan.meta_empty_title.tolist())
    buf = []
    for pos, i in enumerate(order.tolist()):
        m = cat.meta_static[i]
        sub = int(cat.item_subtype[i])
        rec = {
            "main_category": cfg.category,
            "title": "" if pos in empty else m["title"],
            "average_rating": avg[i],
            "rating_number": counts[i],
            "features": m["features"],
            "description": m["description"],
            "price": m["price"],
            "images": [],
            "videos": [],
            "store": cat.item_brand[i],
            "categories": [cfg.category, cat.category_names[int(cat.subtype_category[sub])],
                           cat.subtype_names[sub]],
            "details": m["details"],
            "parent_asin": cat.parent_asin[i],
            "bought_together": None,
        }
        buf.append(json.dumps(rec).encode("utf-8"))
    yield b"\n".join(buf) + b"\n"
