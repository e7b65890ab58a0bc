"""The published MiniOneRec SID index as the SID catalog (``sid_catalog.quantizer: published``).

MiniOneRec ships, per data set, ``index/<Category>.index.json``: ``{"<item_id>": ["<a_60>",
"<b_159>", "<c_203>"], ...}`` keyed by the published item id (our ``items.source_item_id``, as
the MiniOneRec reader keeps it). With this option every item gets exactly those codes, so a model
is compared with the published work on the same item codes.

The published index has SID collisions (Office 15 SIDs shared by 30 items, Industrial 15 by 31).
They are kept, reported and handled as METHOD.md §4 says: items sharing a SID count as hits for
each other (the metrics compare SIDs), the prefix trie maps a shared SID to its lowest item id
(``SIDTrie(allow_shared=True)``, enabled by the table's ``shared_sid`` column), and every report
states that the catalog has collisions. Any item without an entry, a malformed token or entries of
different lengths is an error naming the file and the item.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.sid.catalog import build_sid_table, format_sid, parse_sid

log = logging.getLogger(__name__)


def read_published_index(path: str | Path) -> dict[int, tuple[int, ...]]:
    """``{published item id: codes}`` from an ``*.index.json``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: the published SID index does not exist"
                         + (" (a folder: name the <Category>.index.json in it)"
                            if path.is_dir() else ""))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}, column {exc.colno}: not JSON "
                         f"({exc.msg})") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: expected a non-empty object {{item id: [SID tokens]}}")
    out: dict[int, tuple[int, ...]] = {}
    for key, tokens in raw.items():
        try:
            item = int(key)
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ValueError(f"expected a list of SID tokens, got {tokens!r}")
            out[item] = parse_sid("".join(tokens))
        except ValueError as exc:
            raise InputError(f"{path}: item {key!r}: {exc}") from None
    lengths = sorted({len(c) for c in out.values()})
    if len(lengths) != 1:
        raise InputError(f"{path}: SIDs of different lengths {lengths}")
    return out


def _check_same_catalog(items: pl.DataFrame, path: Path) -> None:
    """The index is keyed by MiniOneRec's item ids; items read by another reader carry ids of
    their own (dense indexes) that would silently pick other items' SIDs. Where the index's
    ``<Category>.item.json`` sits beside it, every item's title must be the one it gives."""
    catalog = path.with_name(path.name.replace(".index.json", ".item.json"))
    if catalog == path or not catalog.is_file() or "title" not in items.columns:
        log.warning("%s: no item.json beside the index to check that the item ids are "
                    "MiniOneRec's; they are taken as such", path)
        return
    published = json.loads(catalog.read_text(encoding="utf-8"))
    wrong = [(s, t) for s, t in items.select("source_item_id", "title").iter_rows()
             if (published.get(str(s)) or {}).get("title", "").strip() != (t or "").strip()]
    if wrong:
        s, t = wrong[0]
        raise InputError(f"{path}: {len(wrong)} of {items.height} items have another title in "
                         f"{catalog.name} (e.g. published item {s}: ours {t!r}); the items do "
                         "not carry MiniOneRec's item ids (read them with format: minionerec)")


def published_sid_table(items: pl.DataFrame, path: str | Path, levels: int,
                        codebook_size: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The SID table of ``items`` (``item_id``, ``source_item_id``) from the published index,
    with ``codes_before`` (= ``codes``) and ``shared_sid``; and the collision accounting."""
    for col in ("item_id", "source_item_id"):
        if col not in items.columns:
            raise InputError(f"items: no column {col!r} (the published index is keyed by the "
                             "published item id, which the MiniOneRec reader keeps)")
    index = read_published_index(path)
    k = len(next(iter(index.values())))
    if k != levels:
        raise InputError(f"{path}: SIDs of {k} levels, sid_catalog.levels is {levels}")
    ids = items["item_id"].to_numpy()
    missing, rows = [], []
    for source in items["source_item_id"].to_list():
        codes = index.get(int(source)) if source is not None else None
        if codes is None:
            missing.append(source)
        rows.append(codes)
    if missing:
        raise InputError(f"{path}: {len(missing)} catalog items have no SID, e.g. published "
                         f"item ids {missing[:5]}")
    _check_same_catalog(items, Path(path))
    codes = np.array(rows, dtype=np.int64)
    if codes.max() >= codebook_size:
        raise InputError(f"{path}: code {int(codes.max())} >= sid_catalog.codebook_size "
                         f"{codebook_size}")
    table = build_sid_table(ids, codes)
    counts = table.group_by("sid").len()
    shared = counts.filter(pl.col("len") > 1)
    table = table.with_columns(
        codes_before=pl.col("codes"),
        shared_sid=pl.col("sid").is_in(shared["sid"].implode()))
    n_shared_items = int(shared["len"].sum()) if shared.height else 0
    resolution = {"method": "published", "source": str(path),
                  "collision_rate_before": n_shared_items / len(ids),
                  "collision_rate_after": n_shared_items / len(ids),
                  "shared_sids": shared.height, "items_sharing_a_sid": n_shared_items,
                  "example_shared": [format_sid(parse_sid(s)) for s in shared["sid"].head(3)],
                  "unused_index_entries": len(index) - len(set(items["source_item_id"]))}
    log.info("published SID index %s: %d items, %d SIDs shared by %d items (kept: they count as "
             "hits for each other)", path, len(ids), shared.height, n_shared_items)
    return table, resolution
