"""Reader for the published MiniOneRec / D3 (ReRe) split CSVs (Amazon 2018 Office, Industrial...).

Layout under ``split_dir``: ``{train,valid,test}/<Cat>_....csv`` plus ``index/<Cat>.item.json``
(MiniOneRec) or ``info/<Cat>_....txt``. Both column sets are read (see ``_split_csv``). List
cells are Python-literal strings parsed safely (``json``/``ast.literal_eval``); a cell that
does not parse is a reject naming file, line and column.

Output:

* ``published_samples``: every published row exactly as published (``split`` from the folder),
  ``history``/``target`` as *source item ids*, ``user_id`` as given, ``timestamp`` the target's
  unix seconds where known.
* ``items``: from ``item.json`` when present, else the info txt. ``source_item_id`` is the
  published ``item_id``; ``asin`` is the real ASIN when the file itself (D3 column set) or the
  row-aligned D3 companion gives one, else ``str(item_id)``.
* ``reviews``: the material to rebuild the **train split, which is not public** (only valid
  and test are). For each user, the history of that user's earliest published row (earliest
  by target timestamp; ties, and everything when there are no timestamps, by split then file
  order) becomes interactions with their timestamps and ratings where known, ``seq`` = position
  in that history, ``file``/``line`` = the row it came from. Train is then reconstructed from
  the (prefix -> next) pairs inside those histories that fall before the valid period; the
  processing step applies that time cut. Users with no valid/test row are absent, and
  interactions older than the ten-item history window are lost. If a train CSV is present it
  is read too (its rows join ``published_samples`` with split "train").
* ``has_timestamps``: the MiniOneRec CSVs carry none. With ``timestamps_dir`` pointing at the
  row-aligned D3/ReRe copy (same samples, same row order; titles are checked row by row and a
  mismatch is an error), target and history timestamps, ratings and ASINs are taken from it.

``lines_read`` and reject ``file`` values are paths relative to the common parent of
``split_dir`` and ``timestamps_dir`` (e.g. ``minionerec/valid/Office_Products_....csv``) because
the split files of one release share a file name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._cells import CellError, parse_list
from sapo_pipeline.data.readers._common import (
    concat_rejects,
    reject_frame,
    require_dir,
    require_file,
)
from sapo_pipeline.data.readers._split_csv import SplitFile, SplitRow, read_split_csv
from sapo_pipeline.data.readers._split_items import Catalog, read_info_txt, read_item_json
from sapo_pipeline.data.readers.registry import register
from sapo_pipeline.data.schema import ITEM_SCHEMA, REVIEW_SCHEMA, SAMPLE_SCHEMA, RawSource

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def _label(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base).as_posix()
    except ValueError:
        return path.name


def _pick(folder: Path, pattern: str, category: str | None, what: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(pattern))
    if category is not None:
        found = [
            p
            for p in found
            if p.name.startswith(f"{category}_") or p.name.startswith(f"{category}.")
        ]
    if len(found) > 1:
        raise InputError(
            f"{folder}: several {what} files {[p.name for p in found]}; "
            f"pass category= to choose one"
        )
    return found[0] if found else None


def _find_splits(root: Path, category: str | None) -> dict[str, Path]:
    files = {s: p for s in SPLITS if (p := _pick(root / s, "*.csv", category, f"{s} CSV"))}
    for split in ("valid", "test"):
        if split not in files:
            raise FileNotFoundError(
                f"no {split} split CSV found: expected {root / split}/{category or '<Cat>'}_*.csv"
            )
    return files


def _find_items(split_dir: Path, item_file: str | Path | None, category: str | None) -> Path:
    if item_file is not None:
        return require_file(item_file, "MiniOneRec/D3 item file (item.json or info .txt)")
    found = _pick(split_dir / "index", "*.item.json", category, "item.json") or _pick(
        split_dir / "info", "*.txt", category, "info .txt"
    )
    if found is None:
        raise FileNotFoundError(
            f"no item file: expected {split_dir / 'index'}/"
            f"{category or '<Cat>'}.item.json or {split_dir / 'info'}/*.txt"
        )
    return found


def _check_titles(m: SplitRow, c: SplitRow, main: SplitFile, comp: SplitFile) -> None:
    for name, a, b in (
        ("history_item_title", m.history_titles_raw, c.history_titles_raw),
        ("item_title", m.target_title_raw, c.target_title_raw),
    ):
        if a == b:
            continue
        try:
            same = (
                parse_list(a, "str") == parse_list(b, "str")
                if name == "history_item_title"
                else a.strip() == b.strip()
            )
        except CellError:
            same = False
        if not same:
            raise InputError(
                f"{main.label} line {m.line} and {comp.label} line {c.line}: "
                f"{name} differ, so timestamps_dir is not row-aligned with split_dir"
            )
    if len(m.history) != len(c.history):
        raise InputError(
            f"{main.label} line {m.line} and {comp.label} line {c.line}: history "
            f"lengths differ ({len(m.history)} vs {len(c.history)})"
        )


def _map_asin(
    asins: dict[int, str], owner: dict[str, int], item: int, asin: str, where: str
) -> None:
    if asins.setdefault(item, asin) != asin:
        raise InputError(
            f"{where}: item id {item} maps to ASIN {asin} here but {asins[item]} "
            f"earlier; the ASIN source is not aligned"
        )
    if owner.setdefault(asin, item) != item:
        raise InputError(f"{where}: ASIN {asin} maps to item ids {owner[asin]} and {item}")


def _apply_companion(main: SplitFile, comp: SplitFile, kept: list[SplitRow]) -> None:
    if main.n_rows != comp.n_rows:
        raise InputError(
            f"{main.label} has {main.n_rows} rows but {comp.label} has "
            f"{comp.n_rows}; timestamps_dir is not row-aligned with split_dir"
        )
    by_index = {r.index: r for r in comp.rows}
    for m in kept:
        c = by_index.get(m.index)
        if c is None:  # the companion row is itself a reject: no timestamps for this sample
            continue
        _check_titles(m, c, main, comp)
        m.history_asins, m.target_asin = c.history_asins, c.target_asin
        m.history_ts, m.target_ts = c.history_ts, c.target_ts
        m.history_rating, m.target_rating = c.history_rating, c.target_rating


def _drop_unknown(split_file: SplitFile, catalog: Catalog) -> list[SplitRow]:
    kept = []
    for r in split_file.rows:
        bad = next((i for i in r.history if i not in catalog.items), None)
        field = "history_item_id" if bad is not None else None
        if bad is None and r.target not in catalog.items:
            bad, field = r.target, "item_id"
        if bad is None:
            kept.append(r)
        else:
            split_file.rejects.append(
                (
                    split_file.label,
                    r.line,
                    field,
                    "unknown_item",
                    f"item id {bad} is not in {catalog.label}",
                )
            )
    return kept


def _reviews(rows: list[tuple[str, SplitRow, str]], asin_of) -> pl.DataFrame:
    """History of each user's earliest row (by target timestamp, then split, then line)."""
    earliest: dict[str, tuple] = {}
    for split, r, label in rows:
        key = (r.target_ts is None, r.target_ts or 0, SPLITS.index(split), r.line)
        if r.user_id not in earliest or key < earliest[r.user_id][0]:
            earliest[r.user_id] = (key, r, label)
    out: dict[str, list] = {c: [] for c in REVIEW_SCHEMA}
    for user, (_, r, label) in earliest.items():
        for pos, item in enumerate(r.history):
            out["user_id"].append(user)
            out["asin"].append(asin_of(item))
            out["timestamp"].append(r.history_ts[pos] if r.history_ts is not None else None)
            out["rating"].append(r.history_rating[pos] if r.history_rating is not None else None)
            out["seq"].append(pos)
            out["file"].append(label)
            out["line"].append(r.line)
    return pl.DataFrame(out, schema=REVIEW_SCHEMA)


def _resolve(root: Path, options: Mapping[str, Any], category: str | None) -> dict[str, Any]:
    """``split_dir`` (default: the folder) and ``timestamps_dir`` are relative to the folder."""
    options = dict(options)
    timestamps = options.pop("timestamps_dir", None)
    return {"split_dir": root / options.pop("split_dir", "."),
            "timestamps_dir": root / timestamps if timestamps else None,
            "category": category, **options}


@register("minionerec", _resolve)
def read_minionerec(
    split_dir: str | Path,
    item_file: str | Path | None = None,
    timestamps_dir: str | Path | None = None,
    category: str | None = None,
) -> RawSource:
    """Read MiniOneRec/D3 split CSVs (+ item catalog, + optional row-aligned D3 timestamps)."""
    split_dir = require_dir(split_dir, "MiniOneRec/D3 split directory (with valid/ and test/)")
    comp_dir = (
        require_dir(timestamps_dir, "D3/ReRe timestamps directory")
        if timestamps_dir is not None
        else None
    )
    base = (
        Path(os.path.commonpath([split_dir.resolve(), comp_dir.resolve()]))
        if comp_dir
        else split_dir.resolve().parent
    )
    mains = {
        s: read_split_csv(p, _label(p, base), s)
        for s, p in _find_splits(split_dir, category).items()
    }
    if len({m.has_d3_columns for m in mains.values()}) > 1:
        raise InputError(f"{split_dir}: the split CSVs mix the MiniOneRec and D3 column sets")
    own_d3 = next(iter(mains.values())).has_d3_columns
    if own_d3 and comp_dir is not None:
        raise InputError(
            f"{split_dir} already has D3 columns (timestamps, ASINs); "
            f"timestamps_dir is only for MiniOneRec CSVs"
        )
    item_path = _find_items(split_dir, item_file, category)
    item_label = _label(item_path, base)
    catalog = (
        read_item_json(item_path, item_label)
        if item_path.name.endswith(".json")
        else read_info_txt(item_path, item_label)
    )

    comps: dict[str, SplitFile] = {}
    kept = {s: _drop_unknown(m, catalog) for s, m in mains.items()}
    if comp_dir is not None:
        comp_files = _find_splits(comp_dir, category)
        for split, main in mains.items():
            if split not in comp_files:
                raise FileNotFoundError(
                    f"no {split} CSV under {comp_dir} to align with {main.label}"
                )
            comp = read_split_csv(comp_files[split], _label(comp_files[split], base), split)
            if not comp.has_d3_columns:
                raise InputError(
                    f"{comp.label}: timestamps_dir must hold D3/ReRe CSVs "
                    f"(with history_timestamp/timestamp columns)"
                )
            _apply_companion(main, comp, kept[split])
            comps[split] = comp

    asins: dict[int, str] = {}
    owner: dict[str, int] = {}
    rows = [(s, r, mains[s].label) for s in SPLITS if s in kept for r in kept[s]]
    for _, r, label in rows:
        if r.history_asins is not None:
            for item, asin in zip(
                r.history + [r.target], r.history_asins + [r.target_asin], strict=True
            ):
                _map_asin(asins, owner, item, asin, f"{label} line {r.line}")

    def asin_of(item: int) -> str:
        return asins.get(item, str(item))

    items = pl.DataFrame(
        [
            {
                "asin": asin_of(i),
                "title": v["title"],
                "brand": v["brand"],
                "categories": v["categories"],
                "description": v["description"],
                "source_item_id": i,
            }
            for i, v in sorted(catalog.items.items())
        ],
        schema=ITEM_SCHEMA,
    )
    samples = pl.DataFrame(
        [
            {
                "sample_id": k,
                "user_id": r.user_id,
                "history": r.history,
                "target": r.target,
                "timestamp": r.target_ts,
                "split": s,
            }
            for k, (s, r, _) in enumerate(rows)
        ],
        schema=SAMPLE_SCHEMA,
    )
    has_ts = own_d3 or comp_dir is not None
    notes = list(catalog.notes)
    if "train" not in mains:
        notes.append(
            "train split not published: reviews hold each user's earliest published "
            "history; rebuild train from its (prefix -> next) pairs before the valid "
            "period"
        )
    if has_ts:
        notes.append(
            f"{len(asins)} of {len(catalog.items)} items have an ASIN from the D3 "
            f"columns; the others keep asin = str(item_id)"
        )
    lines_read = {m.label: m.n_rows for m in mains.values()}
    lines_read.update({c.label: c.n_rows for c in comps.values()})
    lines_read[catalog.label] = catalog.n_records
    rejects = concat_rejects(
        [reject_frame(f.rejects) for f in [*mains.values(), *comps.values()]]
        + [reject_frame(catalog.rejects)]
    )
    return RawSource(
        reviews=_reviews(rows, asin_of),
        items=items,
        rejects=rejects,
        lines_read=lines_read,
        published_samples=samples,
        has_timestamps=has_ts,
        notes=notes,
    )
