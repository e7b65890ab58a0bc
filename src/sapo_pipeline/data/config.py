"""Typed parameters of the ``ingest`` pipeline (conf/base/parameters_ingest.yml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sapo_pipeline.data.generator import GeneratorConfig

SOURCE_FORMATS = ("synthetic", "amazon2023", "amazon2018", "minionerec", "unisrec", "lcrec")
SPLIT_METHODS = ("chronological", "leave_one_out")


def to_epoch_seconds(value: str | int | None) -> int | None:
    """'2016-10', '2016-10-01', an ISO datetime or epoch seconds -> epoch seconds (UTC)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"):
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise ValueError(f"cannot read time {value!r}: use YYYY-MM, YYYY-MM-DD or epoch seconds")


@dataclass
class SourceConfig:
    """Where the raw data is and which reader understands it."""

    format: str = field(
        default="synthetic",
        metadata={"help": f"Reader to use, one of {SOURCE_FORMATS}. 'synthetic' generates "
                          "Amazon-2023-format files with the seeded generator, then reads them."},
    )
    path: str = field(
        default="data/01_raw/synthetic",
        metadata={"help": "Directory of the raw files (relative to the project root)."},
    )
    category: str | None = field(
        default=None,
        metadata={"help": "Amazon category file stem, e.g. 'Office_Products' (reviews file "
                          "<category>.jsonl[.gz] and meta_<category>.jsonl[.gz]); for synthetic "
                          "data it comes from the generator."},
    )
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra keyword arguments of the reader (paths relative to `path`)."},
    )

    def __post_init__(self) -> None:
        if self.format not in SOURCE_FORMATS:
            raise ValueError(f"format {self.format!r} unknown; use one of {SOURCE_FORMATS}")


@dataclass
class FilterConfig:
    """Item and interaction filters, each counted under its rule name in the ingest report."""

    max_title_words: int | None = field(
        default=None,
        metadata={"help": "Drop items whose title has more words (MiniOneRec uses 20); null: off."},
    )
    k_core: int = field(
        default=5,
        metadata={"help": "Iterative k-core on users and items (0 or 1: off)."},
    )
    time_start: str | int | None = field(
        default=None, metadata={"help": "Keep interactions at or after this time (YYYY-MM[-DD])."}
    )
    time_end: str | int | None = field(
        default=None, metadata={"help": "Keep interactions before this time (YYYY-MM[-DD])."}
    )
    drop_duplicate_reviews: bool = field(
        default=True,
        metadata={"help": "Quarantine reviews repeating (user, item, timestamp) of an earlier one."},
    )

    def __post_init__(self) -> None:
        if self.max_title_words is not None and self.max_title_words < 1:
            raise ValueError("max_title_words must be >= 1 or null")
        if self.k_core < 0:
            raise ValueError("k_core must be >= 0")
        start, end = to_epoch_seconds(self.time_start), to_epoch_seconds(self.time_end)
        if start is not None and end is not None and start >= end:
            raise ValueError(f"time_start {self.time_start} must be before time_end {self.time_end}")


@dataclass
class SplitConfig:
    """How (history -> next item) samples are made and split."""

    max_history: int = field(
        default=10, metadata={"help": "History length N: the N previous items (fewer at the start)."}
    )
    method: str = field(
        default="chronological",
        metadata={"help": "'chronological': all samples sorted by target time, cut 8:1:1 (the "
                          "published protocol); 'leave_one_out': per user, last -> test, "
                          "second last -> valid."},
    )
    ratios: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1), metadata={"help": "train/valid/test shares (chronological)."}
    )
    train_cutoff: str = field(
        default="valid",
        metadata={"help": "Pre-split sources (MiniOneRec/D3): reconstructed train samples must "
                          "have targets before the first 'valid' target (no overlap with the "
                          "valid period) or before the first 'test' target."},
    )

    def __post_init__(self) -> None:
        if self.max_history < 1:
            raise ValueError("max_history must be >= 1")
        if self.method not in SPLIT_METHODS:
            raise ValueError(f"split method {self.method!r} unknown; use one of {SPLIT_METHODS}")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or abs(sum(self.ratios) - 1) > 1e-6:
            raise ValueError(f"ratios {self.ratios} must be three non-negative shares summing to 1")
        if self.train_cutoff not in ("valid", "test"):
            raise ValueError("train_cutoff must be 'valid' or 'test'")


@dataclass
class IngestConfig:
    """All parameters of the ``ingest`` pipeline."""

    source: SourceConfig = field(default_factory=SourceConfig)
    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig(defect_rate=0.001))
    filters: FilterConfig = field(default_factory=FilterConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
