"""Small helpers shared by the readers: reject frames, file checks, duplicate items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.schema import REJECT_SCHEMA

#: How long an excerpt of a bad value may be in a reject's detail.
EXCERPT = 80


def excerpt(value: object) -> str:
    """A short printable excerpt of ``value`` for reject details."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def reject_frame(rows: list[tuple]) -> pl.DataFrame:
    """Reject rows ``(file, line, field, reason, detail)`` as a REJECT_SCHEMA frame, by file, line."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    return pl.DataFrame(rows, schema=REJECT_SCHEMA, orient="row")


def concat_rejects(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate reject frames (any may be empty)."""
    frames = [f.select(list(REJECT_SCHEMA)) for f in frames if f.height]
    return pl.concat(frames) if frames else pl.DataFrame(schema=REJECT_SCHEMA)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; ``FileNotFoundError`` naming it and what was expected if absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path; ``FileNotFoundError`` naming it and what was expected if absent."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found (expected a directory): {path}")
    return path


def distinct_names(*paths: Path) -> list[str]:
    """File names for reject rows and ``lines_read``; full paths where two names collide."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def split_duplicates(
    items: pl.DataFrame, key: str, fname: str, field: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row (lowest ``line``) per ``key``; the others become duplicate_item rejects."""
    items = items.sort("line")
    firsts = items.group_by(key, maintain_order=True).agg(pl.col("line").first().alias("_first"))
    tagged = items.join(firsts, on=key, how="left", maintain_order="left")
    is_dup = tagged["line"] != tagged["_first"]
    if not is_dup.any():
        return items, pl.DataFrame(schema=REJECT_SCHEMA)
    dups = tagged.filter(is_dup)
    rejects = dups.select(
        pl.lit(fname).alias("file"),
        "line",
        pl.lit(field).alias("field"),
        pl.lit("duplicate_item").alias("reason"),
        pl.format(
            "{} {} already read on line {}; kept the first",
            pl.lit(field),
            pl.col(key),
            pl.col("_first"),
        ).alias("detail"),
    )
    return items.filter(~is_dup), rejects


def read_json_object(path: Path, what: str, shape: str) -> dict[str, Any]:
    """A whole-file JSON object, or a ValueError naming the file and the expected ``shape``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot be read as {what} ({shape}): {exc}") from None
    if not isinstance(data, dict):  # a wrong file format, not a programming error
        raise InputError(f"{path}: expected a JSON object {shape}, got {type(data).__name__}")  # noqa: TRY004
    return data
