"""Canonical table schemas shared by every reader and by the processing steps.

Every reader, whatever its source format, returns a :class:`RawSource` whose tables have
exactly these columns and dtypes (``conform`` checks it). The processing steps in
``sapo_pipeline.data.processing`` only ever see these shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

#: One row per interaction (a review, or one position of a published sequence).
REVIEW_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Utf8,  # raw user key, as in the source
    "asin": pl.Utf8,  # raw item key (parent_asin / asin / source item id as string)
    "timestamp": pl.Int64,  # unix seconds; null for sources that only give an order
    "rating": pl.Float64,  # null where the source has none
    "seq": pl.Int64,  # order key: the line number for review files, the position in the
    #                   user's sequence for sequence sources; ties on timestamp break on it
    "file": pl.Utf8,  # source file name (for rejects and provenance)
    "line": pl.Int64,  # 1-based line (or row) number in that file
}

#: One row per catalog item, before filtering.
ITEM_SCHEMA: dict[str, pl.DataType] = {
    "asin": pl.Utf8,
    "title": pl.Utf8,  # null or "" where the source has none (filtered later, counted)
    "brand": pl.Utf8,
    "categories": pl.List(pl.Utf8),  # coarse-to-fine category path
    "description": pl.Utf8,
    "source_item_id": pl.Int64,  # the source's own integer id where it has one, else null
}

#: One row per quarantined input row.
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.Utf8,
    "line": pl.Int64,  # 1-based; 0 when the reject concerns a whole record set
    "field": pl.Utf8,  # offending field, null when the whole line is bad
    "reason": pl.Utf8,  # short machine-readable reason, e.g. "malformed_json"
    "detail": pl.Utf8,  # human-readable detail (truncated excerpt, expected type, ...)
}

#: One row per (history -> next item) sample, after item ids are made dense.
SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.Int64,
    "user_id": pl.Utf8,
    "history": pl.List(pl.Int64),  # dense item ids, oldest first, at most N
    "target": pl.Int64,  # dense item id
    "timestamp": pl.Int64,  # target's unix seconds; null for order-only sources
    "split": pl.Utf8,  # "train" | "valid" | "test"
}

#: Reasons used for rejected rows. Readers may add more specific ones; keep them snake_case.
REJECT_REASONS = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "non_utf8",
    "duplicate_review",
    "empty_title",
    "malformed_row",
    "unknown_item",
    "implausible_timestamp",
)


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema."""
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """Select and order ``schema``'s columns, casting where lossless; error naming what is off."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; expected {list(schema)}")
    try:
        return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except pl.exceptions.PolarsError as exc:  # pragma: no cover - message path
        raise ValueError(f"{name}: columns do not match schema {schema}: {exc}") from exc


@dataclass
class RawSource:
    """What a reader returns: parsed tables plus what it could not parse.

    ``lines_read`` maps each input file name to the number of data rows (lines) read from it,
    so that for every file ``lines_read = parsed rows + rejected rows``.
    ``published_samples`` is set only by readers of pre-split sample files (MiniOneRec/D3):
    the valid/test rows exactly as published, in SAMPLE_SCHEMA but with ``history`` and
    ``target`` still holding *source item ids* (``ITEM_SCHEMA.source_item_id``).
    """

    reviews: pl.DataFrame
    items: pl.DataFrame
    rejects: pl.DataFrame
    lines_read: dict[str, int] = field(default_factory=dict)
    published_samples: pl.DataFrame | None = None
    has_timestamps: bool = True
    notes: list[str] = field(default_factory=list)
    #: Files where one line is one review / one item (the Amazon dumps): ``{"reviews": [...],
    #: "items": [...]}``, for the end-to-end totals of the ingest report; None otherwise.
    line_files: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        self.reviews = conform(self.reviews, REVIEW_SCHEMA, "reviews")
        self.items = conform(self.items, ITEM_SCHEMA, "items")
        self.rejects = conform(self.rejects, REJECT_SCHEMA, "rejects")
        if self.published_samples is not None:
            self.published_samples = conform(self.published_samples, SAMPLE_SCHEMA, "samples")
