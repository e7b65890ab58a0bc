"""What the items under each SID prefix have in common, in words.

For every prefix of length 1..K-1 of the catalog's SIDs (a level-1 prefix is a broad group, a
level-2 prefix a sub-type, ...), :func:`build_hierarchy` ranks the category labels, brands and
title words of the items under it. Categories and words are ranked by a tf-idf-like score,
``share_in_prefix * log(n_catalog / n_catalog_with_label)``, so a label every item carries (the
root category) never describes a prefix; brands by their share. The teacher turns these into
sentences ("the next item is most likely a Gel Pens product").

The table form (one row per prefix) is what the ``build_hierarchy`` node saves; the
:class:`Hierarchy` object answers ``summaries(codes)`` for the teacher.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from sapo_pipeline.sid.catalog import format_sid

#: Words never used to describe a prefix (with the configured extra stop-words).
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into",
    "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "with", "without", "your",
    "you", "our", "new", "set", "pack", "count", "pcs", "piece", "pieces", "inch", "inches",
    "size", "color", "colors", "assorted", "per", "each", "one", "two", "three", "four", "five",
    "six", "ten", "plus",
})
_WORD = re.compile(r"[a-z][a-z\-]*[a-z]")

HIERARCHY_SCHEMA: dict[str, pl.DataType] = {
    "level": pl.Int64,  # prefix length, 1..K-1
    "prefix": pl.List(pl.Int64),
    "prefix_sid": pl.Utf8,  # e.g. "<a_12><b_7>"
    "n_items": pl.Int64,
    "categories": pl.List(pl.Utf8),
    "category_shares": pl.List(pl.Float64),
    "brands": pl.List(pl.Utf8),
    "brand_shares": pl.List(pl.Float64),
    "words": pl.List(pl.Utf8),
    "word_shares": pl.List(pl.Float64),
}


@dataclass(frozen=True)
class PrefixSummary:
    """The items under one SID prefix: how many, and their top labels with their shares."""

    prefix: tuple[int, ...]
    n_items: int
    categories: tuple[tuple[str, float], ...] = ()
    brands: tuple[tuple[str, float], ...] = ()
    words: tuple[tuple[str, float], ...] = ()

    @property
    def level(self) -> int:
        return len(self.prefix)

    def label(self, avoid: Iterable[str] = ()) -> str:
        """A short name: the top category not in ``avoid``, else the top two words, else ''."""
        avoid = {a.lower() for a in avoid}
        for name, _ in self.categories:
            if name.lower() not in avoid:
                return name
        words = [w for w, _ in self.words[:2]]
        return " / ".join(words)

    def top_words(self, n: int = 3) -> list[str]:
        return [w for w, _ in self.words[:n]]

    def top_brands(self, n: int = 2) -> list[str]:
        return [b for b, _ in self.brands[:n]]


@dataclass
class HierarchyConfig:
    """How many labels to keep per prefix, and which words count."""

    top_categories: int = field(default=3, metadata={"help": "Category labels kept per prefix."})
    top_brands: int = field(default=3, metadata={"help": "Brands kept per prefix."})
    top_words: int = field(default=5, metadata={"help": "Title words kept per prefix."})
    min_word_length: int = field(
        default=3, metadata={"help": "Shorter title words are ignored (after lower-casing)."}
    )
    extra_stopwords: tuple[str, ...] = field(
        default=(), metadata={"help": "More words never used to describe a prefix."}
    )

    def __post_init__(self) -> None:
        for name in ("top_categories", "top_brands", "top_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_word_length < 1:
            raise ValueError(f"min_word_length must be >= 1, got {self.min_word_length}")
        self.extra_stopwords = tuple(str(w).lower() for w in self.extra_stopwords)


def title_words(title: str | None, cfg: HierarchyConfig, brand: str | None = None) -> list[str]:
    """Distinct lower-case words of a title that may describe a prefix, in order of appearance.

    Words of the item's own ``brand`` are left out (a brand is reported as a brand).
    """
    stop = STOPWORDS | set(cfg.extra_stopwords) | set(_WORD.findall((brand or "").lower()))
    out: list[str] = []
    for w in _WORD.findall((title or "").lower()):
        if len(w) >= cfg.min_word_length and w not in stop and w not in out:
            out.append(w)
    return out


def _ranked(pairs: pl.DataFrame, prefixes: pl.DataFrame, level: int, n_catalog: int,
            top: int, use_idf: bool) -> pl.DataFrame:
    """Top ``top`` labels per prefix from (item_id, label) pairs: prefix, labels, shares."""
    if pairs.height == 0:
        return pl.DataFrame(schema={"prefix": pl.List(pl.Int64), "labels": pl.List(pl.Utf8),
                                    "shares": pl.List(pl.Float64)})
    df = pairs.group_by("label").agg(pl.len().alias("df"))
    joined = pairs.join(prefixes, on="item_id").with_columns(
        pl.col("codes").list.head(level).alias("prefix")
    )
    sizes = joined.select("prefix", "item_id").unique().group_by("prefix").agg(
        pl.len().alias("size"))
    counts = (
        joined.group_by("prefix", "label").agg(pl.len().alias("n"))
        .join(sizes, on="prefix").join(df, on="label")
        .with_columns(share=pl.col("n") / pl.col("size"))
    )
    idf = (pl.lit(float(n_catalog)) / pl.col("df")).log() if use_idf else pl.lit(1.0)
    counts = counts.with_columns(score=pl.col("share") * idf).filter(pl.col("score") > 1e-12)
    return (
        counts.sort(["score", "n", "label"], descending=[True, True, False])
        .group_by("prefix", maintain_order=True)
        .agg(pl.col("label").head(top).alias("labels"), pl.col("share").head(top).alias("shares"))
    )


def build_hierarchy(items: pl.DataFrame, sid_table: pl.DataFrame,
                    cfg: HierarchyConfig | None = None) -> pl.DataFrame:
    """One row per SID prefix of length 1..K-1 (:data:`HIERARCHY_SCHEMA`), sorted by prefix."""
    cfg = cfg or HierarchyConfig()
    for name, table, cols in (("items", items, ("item_id", "title", "brand", "categories")),
                              ("sid_table", sid_table, ("item_id", "codes"))):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"build_hierarchy: {name} lacks columns {missing}")
    lengths = sid_table["codes"].list.len().unique().to_list()
    if len(lengths) != 1:
        raise ValueError(f"build_hierarchy: SIDs of different lengths {sorted(lengths)}")
    levels = int(lengths[0])
    codes = sid_table.select(pl.col("item_id").cast(pl.Int64), "codes")
    known = items.join(codes, on="item_id", how="semi")
    n_catalog = max(known.height, 1)
    cats = (known.select("item_id", pl.col("categories").alias("label")).explode("label")
            .filter(pl.col("label").is_not_null() & (pl.col("label").str.strip_chars() != ""))
            .with_columns(pl.col("label").str.strip_chars()).unique())
    brands = (known.select("item_id", pl.col("brand").str.strip_chars().alias("label"))
              .filter(pl.col("label").is_not_null() & (pl.col("label") != "")))
    pairs = [(i, w) for i, t, b in zip(known["item_id"], known["title"], known["brand"])
             for w in title_words(t, cfg, b)]
    words = pl.DataFrame({"item_id": [i for i, _ in pairs], "label": [w for _, w in pairs]},
                         schema={"item_id": pl.Int64, "label": pl.Utf8})
    frames = []
    for level in range(1, levels):
        base = (codes.with_columns(pl.col("codes").list.head(level).alias("prefix"))
                .group_by("prefix").agg(pl.len().alias("n_items")))
        out = base
        for name, shares, pairs, top, idf in (
            ("categories", "category_shares", cats, cfg.top_categories, True),
            ("brands", "brand_shares", brands, cfg.top_brands, False),
            ("words", "word_shares", words, cfg.top_words, True),
        ):
            ranked = _ranked(pairs, codes, level, n_catalog, top, idf).rename(
                {"labels": name, "shares": shares})
            out = out.join(ranked, on="prefix", how="left")
        frames.append(out.with_columns(pl.lit(level, dtype=pl.Int64).alias("level")))
    if not frames:
        return pl.DataFrame(schema=HIERARCHY_SCHEMA)
    table = pl.concat(frames, how="vertical_relaxed")
    fill = {c: pl.col(c).fill_null(pl.lit([], dtype=t))
            for c, t in HIERARCHY_SCHEMA.items() if isinstance(t, pl.List) and c != "prefix"}
    table = table.with_columns(**fill).with_columns(
        pl.col("prefix").map_elements(format_sid, return_dtype=pl.Utf8).alias("prefix_sid"))
    return (table.select([pl.col(c).cast(t) for c, t in HIERARCHY_SCHEMA.items()])
            .sort(["level", "prefix"]))


class Hierarchy:
    """Prefix -> :class:`PrefixSummary` lookup over a hierarchy table."""

    def __init__(self, summaries: Iterable[PrefixSummary], levels: int):
        self.levels = int(levels)
        self._by_prefix = {s.prefix: s for s in summaries}

    @classmethod
    def from_table(cls, table: pl.DataFrame, levels: int) -> Hierarchy:
        missing = [c for c in HIERARCHY_SCHEMA if c not in table.columns]
        if missing:
            raise ValueError(f"Hierarchy.from_table: missing columns {missing}")
        out = []
        for row in table.iter_rows(named=True):
            out.append(PrefixSummary(
                prefix=tuple(int(c) for c in row["prefix"]),
                n_items=int(row["n_items"]),
                categories=tuple(zip(row["categories"] or [], row["category_shares"] or [])),
                brands=tuple(zip(row["brands"] or [], row["brand_shares"] or [])),
                words=tuple(zip(row["words"] or [], row["word_shares"] or [])),
            ))
        bad = [s.prefix for s in out if not 1 <= len(s.prefix) < levels]
        if bad:
            raise ValueError(f"Hierarchy.from_table: prefixes {bad[:5]} do not fit {levels} levels")
        return cls(out, levels)

    def summary(self, prefix: Sequence[int]) -> PrefixSummary:
        key = tuple(int(c) for c in prefix)
        try:
            return self._by_prefix[key]
        except KeyError:
            raise KeyError(f"no hierarchy entry for SID prefix {key}; rebuild the hierarchy "
                           "from the current sid_table") from None

    def summaries(self, codes: Sequence[int]) -> tuple[PrefixSummary, ...]:
        """Summaries of the prefixes of ``codes`` of length 1..K-1 (coarse to fine)."""
        codes = tuple(int(c) for c in codes)
        if len(codes) != self.levels:
            raise ValueError(f"SID {codes} has {len(codes)} levels, hierarchy has {self.levels}")
        return tuple(self.summary(codes[:k]) for k in range(1, self.levels))

    def __len__(self) -> int:
        return len(self._by_prefix)
