"""Typed parameters of the ``ingest`` pipeline (conf/base/parameters_ingest.yml)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any


def source_formats() -> tuple[str, ...]:
    """``synthetic`` and every format a reader module registers (sapo_pipeline.data.readers)."""
    from sapo_pipeline.data.readers import READERS

    return ("synthetic", *sorted(READERS))

SPLIT_METHODS = ("chronological", "leave_one_out")


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
        metadata={"help": "Reader to use: a format registered in sapo_pipeline.data.readers "
                          "(amazon2023, amazon2018, minionerec, unisrec, lcrec) or 'synthetic', "
                          "which generates Amazon-2023-format files with the seeded generator, "
                          "then reads them."},
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
        if self.format not in (formats := source_formats()):
            raise ValueError(f"format {self.format!r} unknown; use one of {formats}")


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
