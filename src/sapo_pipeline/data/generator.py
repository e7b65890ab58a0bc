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
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from json.encoder import encode_basestring_ascii as _enc  # what json.dumps uses for str
from pathlib import Path

import numpy as np

from sapo_pipeline.data.generator_behaviour import Interactions, review_text, simulate
from sapo_pipeline.data.generator_catalog import Catalog, build_catalog, lower_head, random_ids
from sapo_pipeline.data.generator_defects import DefectPlan, apply_review_defect, plan_defects
from sapo_pipeline.io_utils import sha256_file, write_chunks_atomically

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MANIFEST_NAME = "_manifest.json"
_CHUNK = 50_000


@dataclass
class GeneratorConfig:
    """How much synthetic data to make and how it behaves. Same config -> byte-identical files."""

    seed: int = field(default=0, metadata={"help": "Seed for every random draw."})
    category: str = field(default="Synthetic_Products", metadata={
        "help": "Dataset name: files are <category>.jsonl and meta_<category>.jsonl, and it is "
                "the root of every item's category path. Letters, digits, '_' and '-' only."})
    n_items: int = field(default=2000, metadata={"help": "Catalog size before `scale`."})
    n_users: int = field(default=3000, metadata={"help": "Number of users before `scale`."})
    scale: float = field(default=1.0, metadata={
        "help": "Multiplies n_users and n_items (rounded); reviews grow linearly with it. "
                "scale=21 gives ~1M reviews for benchmarks. The category tree does not scale."})
    min_reviews_per_user: int = field(default=5, metadata={
        "help": "Every user has at least this many reviews (5 keeps users through a 5-core)."})
    mean_reviews_per_user: float = field(default=16.0, metadata={
        "help": "Mean reviews per user before the cap: min + a geometric extra of this mean."})
    max_reviews_per_user: int = field(default=120, metadata={"help": "Cap on reviews per user."})
    n_top_categories: int = field(default=8, metadata={
        "help": "Top categories (level 1 of the path). The first 8 use a hand-written word bank; "
                "more get pronounceable generated names."})
    subtypes_per_category: int = field(default=6, metadata={
        "help": "Sub-types per top category (level 2; first 8 per bank category are curated)."})
    n_brands: int = field(default=48, metadata={
        "help": "Brands in all; each belongs to one top category (round-robin)."})
    brands_per_subtype: int = field(default=4, metadata={
        "help": "Brands each sub-type draws from its top category's brands."})
    min_items_per_subtype: int = field(default=5, metadata={
        "help": "Floor on items per sub-type; the rest are spread unevenly."})
    zipf_exponent: float = field(default=0.9, metadata={
        "help": "Item popularity within a sub-type ~ rank^-zipf_exponent."})
    start_date: str = field(default="2016-10-01", metadata={
        "help": "First possible review day (ISO date, UTC)."})
    end_date: str = field(default="2018-11-01", metadata={
        "help": "Reviews fall strictly before this day (ISO date, UTC)."})
    stay_prob: float = field(default=0.6, metadata={
        "help": "Probability the next purchase stays in the current sub-type."})
    complement_prob: float = field(default=0.25, metadata={
        "help": "Probability the next purchase moves to a complementary sub-type; the rest "
                "(1 - stay - complement) jumps to one of the user's preferred categories."})
    preferred_categories: int = field(default=3, metadata={
        "help": "Each user prefers 1..this many top categories (two sub-types in each)."})
    drift_prob: float = field(default=0.05, metadata={
        "help": "Per-step probability that one preferred category is replaced (drift)."})
    defect_rate: float = field(default=0.0, metadata={
        "help": "Fraction of review lines (and of meta lines) to corrupt, split evenly over the "
                "defect kinds; 0 writes clean files. At most 0.5."})

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"GeneratorConfig.{name}={getattr(self, name)!r}: {msg}")

        for name in ("seed", "n_items", "n_users", "min_reviews_per_user", "max_reviews_per_user",
                     "n_top_categories", "subtypes_per_category", "n_brands",
                     "brands_per_subtype", "min_items_per_subtype", "preferred_categories"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), name, "must be an int")
            need(value >= (0 if name == "seed" else 1), name, "must be >= 1 (seed >= 0)")
        need(bool(re.fullmatch(r"[A-Za-z0-9_\-]+", str(self.category))), "category",
             "use letters, digits, '_' or '-' only (it names files)")
        need(self.scale > 0, "scale", "must be > 0")
        need(self.min_reviews_per_user <= self.mean_reviews_per_user, "mean_reviews_per_user",
             "must be >= min_reviews_per_user")
        need(self.min_reviews_per_user <= self.max_reviews_per_user, "max_reviews_per_user",
             "must be >= min_reviews_per_user")
        need(self.zipf_exponent >= 0, "zipf_exponent", "must be >= 0")
        for name in ("stay_prob", "complement_prob", "drift_prob"):
            need(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        need(self.stay_prob + self.complement_prob <= 1.0, "complement_prob",
             "stay_prob + complement_prob must be <= 1")
        need(0.0 <= self.defect_rate <= 0.5, "defect_rate", "must be in [0, 0.5]")
        try:
            start, end = date.fromisoformat(self.start_date), date.fromisoformat(self.end_date)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"GeneratorConfig start_date/end_date must be ISO dates: {exc}") from exc
        need(start < end, "end_date", f"must be after start_date {self.start_date}")
        need(self.n_brands >= self.n_top_categories, "n_brands", "must be >= n_top_categories")
        n_sub = self.n_top_categories * self.subtypes_per_category
        need(self.total_items >= self.min_items_per_subtype * n_sub, "n_items",
             f"n_items * scale = {self.total_items} < min_items_per_subtype * sub-types "
             f"= {self.min_items_per_subtype * n_sub}")

    @property
    def total_users(self) -> int:
        """Users after scaling."""
        return max(1, round(self.n_users * self.scale))

    @property
    def total_items(self) -> int:
        """Items after scaling."""
        return max(1, round(self.n_items * self.scale))

    @property
    def reviews_file(self) -> str:
        return f"{self.category}.jsonl"

    @property
    def meta_file(self) -> str:
        return f"meta_{self.category}.jsonl"


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
