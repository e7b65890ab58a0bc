"""Shared assembly for the raw Amazon review + metadata readers (2018 and 2023 releases)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._common import (
    concat_rejects,
    distinct_names,
    reject_frame,
    split_duplicates,
)
from sapo_pipeline.data.readers.jsonl import FieldSpec, read_jsonl
from sapo_pipeline.data.readers.registry import Resolve
from sapo_pipeline.data.schema import RawSource


def _blank_to_null(col: str) -> pl.Expr:
    c = pl.col(col).str.strip_chars()
    return pl.when(c == "").then(None).otherwise(c).alias(col)


def _text_list(col: str) -> pl.Expr:
    """Drop null and blank entries of a List(Utf8) column (null list -> empty list)."""
    return (
        pl.col(col)
        .fill_null(pl.lit([], dtype=pl.List(pl.Utf8)))
        .list.eval(pl.element().filter(pl.element().str.strip_chars() != "").str.strip_chars())
        .alias(col)
    )


#: Reviews are plausible from Amazon's first reviews (1995) to a day after the run.
FIRST_REVIEW_S = 788_918_400  # 1995-01-01T00:00:00Z
UNITS = {1: "seconds", 1000: "milliseconds"}


def check_timestamps(frame: pl.DataFrame, divisor: int, file: str, release: str
                     ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the reviews whose timestamp, read in the release's unit (``divisor`` raw units per
    second), falls between 1995 and tomorrow; the others are ``implausible_timestamp``
    rejects with the value and the date it would be. A file whose median timestamp is
    implausible in its own unit but plausible in the other one is in the wrong unit: an
    InputError saying so (one such file would put every review in 1970 or in the far future)."""
    if frame.is_empty():
        return frame, reject_frame([])
    last = time.time() + 86_400
    seconds = pl.col("timestamp") // divisor
    plausible = (seconds >= FIRST_REVIEW_S) & (seconds <= last)
    median = float(frame["timestamp"].median())
    if not FIRST_REVIEW_S <= median / divisor <= last:
        for other, unit in UNITS.items():
            if other != divisor and FIRST_REVIEW_S <= median / other <= last:
                raise InputError(
                    f"{file}: timestamps are in {unit}, Amazon {release} files hold "
                    f"{UNITS[divisor]} (median {int(median)} = "
                    f"{_date(median / other)} in {unit}, {_date(median / divisor)} as read); "
                    f"use the reader of the release the file comes from")
    bad = frame.filter(~plausible)
    rows = [(file, int(r["line"]), "timestamp", "implausible_timestamp",
             f"{r['timestamp']} {UNITS.get(divisor, 'units')} = {_date(r['timestamp'] / divisor)}, "
             f"outside 1995-01-01 .. tomorrow")
            for r in bad.select("line", "timestamp").iter_rows(named=True)]
    return frame.filter(plausible), reject_frame(rows)


def _date(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "out of range"


#: File name patterns per Amazon release: (reviews, meta), tried plain then gzipped.
AMAZON_FILES = {
    "amazon2023": ("{cat}.jsonl", "meta_{cat}.jsonl"),
    "amazon2018": ("{cat}.json", "meta_{cat}.json"),
}


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"expected {root / name} (or {name}.gz): not found")


def _categories(root: Path, fmt: str) -> list[str]:
    """Categories of ``fmt``'s meta files in ``root`` (``meta_<cat>.json[l][.gz]``, exactly)."""
    prefix, suffix = AMAZON_FILES[fmt][1].split("{cat}")
    names = {p.name.removesuffix(".gz") for p in root.iterdir() if p.is_file()}
    return sorted(n[len(prefix): len(n) - len(suffix)] for n in names
                  if n.startswith(prefix) and n.endswith(suffix) and len(n) > len(prefix + suffix))


def _detect_category(root: Path, fmt: str) -> str:
    found = _categories(root, fmt)
    if len(found) == 1:
        return found[0]
    pattern = AMAZON_FILES[fmt][1].replace("{cat}", "*")
    hint = ""
    for other in AMAZON_FILES:
        if other != fmt and not found and (theirs := _categories(root, other)):
            hint = (f"; the folder holds {other} files ({AMAZON_FILES[other][1].format(cat=theirs[0])}"
                    f"): set ingest.source.format: {other}")
    raise InputError(f"{root}: set ingest.source.category; expected exactly one {pattern} file, "
                     f"found {found}{hint}")


def amazon_files(release: str) -> Resolve:
    """Resolve: ``<cat>.json[l][.gz]`` and ``meta_<cat>.json[l][.gz]`` of ``release`` in the
    folder; the category is the configured one, else the only one the folder holds."""

    def resolve(root: Path, options: Mapping[str, Any], category: str | None) -> dict[str, Any]:
        cat = category or _detect_category(root, release)
        reviews, meta = (p.format(cat=cat) for p in AMAZON_FILES[release])
        return {"reviews_path": _find(root, reviews), "meta_path": _find(root, meta), **options}

    return resolve


def read_amazon_pair(
    reviews_path: str | Path,
    meta_path: str | Path,
    *,
    review_specs: list[FieldSpec],
    meta_specs: list[FieldSpec],
    key_field: str,
    ts_divisor: int,
    release: str,
) -> RawSource:
    """Read a review file and a metadata file of one Amazon release into a RawSource.

    ``review_specs`` must yield columns user_id, asin, timestamp, rating; ``meta_specs`` asin,
    title, brand, categories (List), description (List) and optionally main_category (used as a
    one-element category path when ``categories`` is empty). ``key_field`` is the JSON name of
    the item key (for duplicate rejects); timestamps are divided by ``ts_divisor`` (floor).
    """
    reviews_path, meta_path = Path(reviews_path), Path(meta_path)
    r_name, m_name = distinct_names(reviews_path, meta_path)
    rev = read_jsonl(
        reviews_path, review_specs, expected=f"Amazon {release} review JSON lines", file=r_name
    )
    meta = read_jsonl(
        meta_path, meta_specs, expected=f"Amazon {release} metadata JSON lines", file=m_name
    )

    frame, ts_rejects = check_timestamps(rev.frame, ts_divisor, r_name, release)
    reviews = frame.select(
        "user_id",
        "asin",
        (pl.col("timestamp") // ts_divisor).alias("timestamp"),
        "rating",
        pl.col("line").alias("seq"),
        pl.lit(r_name).alias("file"),
        "line",
    )

    items, dup_rejects = split_duplicates(meta.frame, "asin", m_name, key_field)
    cats = _text_list("categories")
    if "main_category" in items.columns:
        main = pl.col("main_category").str.strip_chars()
        fallback = (
            pl.when(main.is_not_null() & (main != ""))
            .then(pl.concat_list([main]))
            .otherwise(pl.lit([], dtype=pl.List(pl.Utf8)))
        )
        cats = pl.when(cats.list.len() > 0).then(cats).otherwise(fallback).alias("categories")
    items = (
        items.with_columns(
            _blank_to_null("title"),
            _blank_to_null("brand"),
            cats,
            _text_list("description").list.join(" ").alias("description"),
        )
        .with_columns(_blank_to_null("description"))
        .select(
            "asin",
            "title",
            "brand",
            "categories",
            "description",
            pl.lit(None, dtype=pl.Int64).alias("source_item_id"),
        )
    )

    notes = []
    n_untitled = items["title"].null_count()
    if n_untitled:
        notes.append(
            f"{m_name}: {n_untitled} items without a title kept with title null "
            f"(the processing step drops and counts them)"
        )
    return RawSource(
        reviews=reviews,
        items=items,
        rejects=concat_rejects([rev.rejects, ts_rejects, meta.rejects, dup_rejects]),
        lines_read={r_name: rev.lines_read, m_name: meta.lines_read},
        has_timestamps=True,
        notes=notes,
        line_files={"reviews": [r_name], "items": [m_name]},
    )
