"""From parsed raw tables to the catalog, the interactions and the split samples.

Steps (each one a function, each one accounted for in a :class:`Ledger`):

1. ``dedupe_reviews``     quarantine repeats of (user, item, timestamp)
2. ``filter_items``       items without a title / with too long a title
3. ``filter_reviews``     reviews of filtered or unknown items, outside the time window, k-core
4. ``index_catalog``      dense item ids for the items that still have interactions
5. ``make_samples``       per-user chronological sliding windows (history of N -> next)
6. ``split_samples``      global chronological 8:1:1 by target time, or leave-one-out

Order within a user is (timestamp, seq): same-day reviews keep their file order.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pyarrow as pa

from sapo_pipeline.data.accounting import Ledger
from sapo_pipeline.data.config import FilterConfig, SplitConfig, to_epoch_seconds
from sapo_pipeline.data.schema import REJECT_SCHEMA, SAMPLE_SCHEMA

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def _reject_rows(df: pl.DataFrame, reason: str, detail: pl.Expr | str) -> pl.DataFrame:
    """Reject rows for ``df`` (which has file and line columns) under ``reason``."""
    detail_expr = pl.lit(detail) if isinstance(detail, str) else detail
    return df.select(
        pl.col("file"),
        pl.col("line"),
        pl.lit(None, dtype=pl.Utf8).alias("field"),
        pl.lit(reason).alias("reason"),
        detail_expr.cast(pl.Utf8).alias("detail"),
    ).cast(REJECT_SCHEMA)


def dedupe_reviews(reviews: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, Ledger]:
    """Quarantine reviews that repeat an earlier (user, item, timestamp); the first one stays.

    Rows without a timestamp (sequence sources) are never duplicates: a repeated purchase in a
    published sequence is data.
    """
    ledger = Ledger("dedupe_reviews", reviews.height)
    key = ["user_id", "asin", "timestamp"]
    is_dup = pl.col("timestamp").is_not_null() & ~pl.struct(key).is_first_distinct()
    flagged = reviews.with_columns(_dup=is_dup, _first_file=pl.col("file").first().over(key),
                                   _first_line=pl.col("line").first().over(key))
    dups = flagged.filter(pl.col("_dup"))
    kept = flagged.filter(~pl.col("_dup")).drop("_dup", "_first_file", "_first_line")
    rejects = _reject_rows(
        dups,
        "duplicate_review",
        pl.format("repeats (user_id={}, asin={}, timestamp={}) of {} line {}; kept the first",
                  "user_id", "asin", "timestamp", "_first_file", "_first_line"),
    )
    ledger.kept = kept.height
    ledger.reject("duplicate_review", dups.height)
    return kept, rejects, ledger.check()


def filter_items(items: pl.DataFrame, cfg: FilterConfig) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Split the parsed items into usable ones and those removed by each named rule."""
    title = pl.col("title").str.strip_chars()
    no_title = items.filter(title.is_null() | (title == ""))
    rest = items.filter(title.is_not_null() & (title != ""))
    removed = {"item_without_title": no_title}
    if cfg.max_title_words is not None:
        n_words = title.str.split(" ").list.len()
        removed["title_too_long"] = rest.filter(n_words > cfg.max_title_words)
        rest = rest.filter(n_words <= cfg.max_title_words)
    return rest, removed


def k_core(reviews: pl.DataFrame, k: int) -> pl.DataFrame:
    """Iteratively keep users and items with at least ``k`` interactions each.

    Counts are recomputed with ``numpy.bincount`` over integer codes, so each round is a
    couple of vectorised passes, not a group-by over strings.
    """
    if k <= 1 or reviews.height == 0:
        return reviews
    users = reviews["user_id"].cast(pl.Categorical).to_physical().to_numpy()
    items = reviews["asin"].cast(pl.Categorical).to_physical().to_numpy()
    keep = np.ones(reviews.height, dtype=bool)
    for rounds in range(1, 10_000):
        user_n = np.bincount(users[keep], minlength=users.max() + 1)
        item_n = np.bincount(items[keep], minlength=items.max() + 1)
        nxt = keep & (user_n[users] >= k) & (item_n[items] >= k)
        if nxt.sum() == keep.sum():
            log.info("k-core(%d) converged after %d rounds: %d interactions", k, rounds, int(nxt.sum()))
            return reviews.filter(pl.Series(nxt))
        keep = nxt
    raise RuntimeError("k-core did not converge")  # pragma: no cover - at most one round per row


def filter_reviews(
    reviews: pl.DataFrame, items: pl.DataFrame, removed_items: dict[str, pl.DataFrame], cfg: FilterConfig
) -> tuple[pl.DataFrame, Ledger]:
    """Apply the interaction filters in order; every removed row is counted under its rule."""
    ledger = Ledger("filter_reviews", reviews.height)
    current = reviews
    for rule, gone in removed_items.items():
        nxt = current.join(gone.select("asin"), on="asin", how="anti")
        ledger.filter(rule, current.height - nxt.height)
        current = nxt
    nxt = current.join(items.select("asin"), on="asin", how="semi")
    ledger.filter("item_without_metadata", current.height - nxt.height)
    current = nxt

    start, end = to_epoch_seconds(cfg.time_start), to_epoch_seconds(cfg.time_end)
    if start is not None or end is not None:
        if current["timestamp"].null_count():
            raise ValueError("a time window needs timestamps, and this source has none")
        keep = pl.lit(True)
        if start is not None:
            keep = keep & (pl.col("timestamp") >= start)
        if end is not None:
            keep = keep & (pl.col("timestamp") < end)
        nxt = current.filter(keep)
        ledger.filter("outside_time_window", current.height - nxt.height)
        current = nxt

    nxt = k_core(current, cfg.k_core)
    ledger.filter(f"k_core_{cfg.k_core}", current.height - nxt.height)
    ledger.kept = nxt.height
    return nxt, ledger.check()


def index_catalog(
    items: pl.DataFrame, interactions: pl.DataFrame, keep_source_ids: bool
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Give items dense ids and attach them to the interactions.

    With ``keep_source_ids`` (pre-split sources whose published ids index their item files) the
    whole published catalog stays, under its own ids. Otherwise the catalog is the items that
    still have interactions, numbered in ASIN order; returns how many items had none left.
    """
    if keep_source_ids:
        ids = items["source_item_id"]
        if ids.null_count() or ids.n_unique() != items.height:
            raise ValueError("keep_source_ids needs a unique source_item_id on every item")
        catalog = items.with_columns(item_id=pl.col("source_item_id")).sort("item_id")
        dropped = 0
    else:
        used = interactions.select("asin").unique()
        catalog = (
            items.join(used, on="asin", how="semi")
            .sort("asin")
            .with_row_index("item_id")
            .with_columns(pl.col("item_id").cast(pl.Int64))
        )
        dropped = items.height - catalog.height
    cols = ["item_id", "asin", "title", "brand", "categories", "description", "source_item_id"]
    catalog = catalog.select(cols)
    inter = interactions.join(catalog.select("asin", "item_id"), on="asin", how="inner")
    if inter.height != interactions.height:
        raise ValueError(f"{interactions.height - inter.height} interactions lost their item")
    # (user, timestamp, seq) is unique per row, so no stable sort is needed (and it is slow).
    inter = inter.select("user_id", "item_id", "asin", "timestamp", "rating", "seq").sort(
        ["user_id", "timestamp", "seq"], nulls_last=True
    )
    return catalog, inter, dropped


def make_samples(interactions: pl.DataFrame, max_history: int) -> pl.DataFrame:
    """Sliding windows over each user's ordered interactions: the N previous items -> next.

    Every interaction after a user's first becomes one sample's target; duplicates are kept
    (a repeat purchase is a legitimate target), as in the published protocol. With rows sorted
    by user, sample ``i``'s history is the slice ``items[i - min(pos_i, N) : i]``; the list
    column is assembled from those slices' offsets in one vectorised step.
    """
    ordered = interactions.sort(["user_id", "timestamp", "seq"], nulls_last=True)
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = pl.when(pl.col("user_id") != pl.col("user_id").shift(1, fill_value="")).then(row)
    ordered = ordered.with_columns(pos=row - starts.forward_fill())

    pos = ordered["pos"].to_numpy()
    items = ordered["item_id"].to_numpy()
    ends = np.flatnonzero(pos > 0)  # row of each sample's target = end of its history slice
    lengths = np.minimum(pos[ends], max_history)
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    values = items[np.repeat(ends - lengths, lengths) + within]
    history = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64())))
    return ordered[ends].select(
        "user_id",
        history.alias("history").cast(pl.List(pl.Int64)),
        pl.col("item_id").alias("target"),
        "timestamp",
        "pos",
    )


def split_samples(samples: pl.DataFrame, cfg: SplitConfig) -> pl.DataFrame:
    """Assign train/valid/test and number the samples; returns SAMPLE_SCHEMA (plus nothing)."""
    if cfg.method == "chronological":
        if samples.height and samples["timestamp"].null_count():
            raise ValueError(
                "chronological split needs target timestamps, and this source has none: "
                "set ingest.split.method: leave_one_out"
            )
        ordered = samples.sort(["timestamp", "user_id", "pos"])
        n = ordered.height
        n_train = int(n * cfg.ratios[0])
        n_valid = int(n * (cfg.ratios[0] + cfg.ratios[1])) - n_train
        idx = pl.int_range(pl.len())
        split = (
            pl.when(idx < n_train)
            .then(pl.lit("train"))
            .when(idx < n_train + n_valid)
            .then(pl.lit("valid"))
            .otherwise(pl.lit("test"))
        )
        out = ordered.with_columns(split=split)
    else:
        from_end = pl.col("pos").rank("ordinal", descending=True).over("user_id")
        split = (
            pl.when(from_end == 1)
            .then(pl.lit("test"))
            .when(from_end == 2)
            .then(pl.lit("valid"))
            .otherwise(pl.lit("train"))
        )
        out = samples.with_columns(split=split).sort(["user_id", "pos"])
    out = out.with_columns(
        split_rank=pl.col("split").replace_strict({s: i for i, s in enumerate(SPLITS)})
    ).sort("split_rank", maintain_order=True)
    return finalize_samples(out)


def finalize_samples(samples: pl.DataFrame) -> pl.DataFrame:
    """Number samples in their current order and cast to SAMPLE_SCHEMA."""
    return samples.with_row_index("sample_id").select(
        [pl.col(c).cast(t) for c, t in SAMPLE_SCHEMA.items()]
    )


def split_counts(samples: pl.DataFrame) -> dict[str, int]:
    """Number of samples per split, every split named (zero where empty)."""
    counts = dict(samples.group_by("split").len().iter_rows())
    return {s: int(counts.get(s, 0)) for s in SPLITS}
