"""Ranking metrics of beam-search predictions against one target per sample (METHOD.md §4).

Per sample (kept per row, for bootstrap CIs and paired tests):

* ``recall@K`` (= HR@K with one target): 1 if a beam among the first K is a hit;
* ``ndcg@K``: ``1 / log2(r + 2)`` for the first hit at 0-based rank ``r < K``, else 0 (the ideal
  DCG of a single relevant item is 1);
* ``validity``: share of the sample's returned beams whose SID is a catalog SID;
* ``level_acc_k`` / ``prefix_acc_k`` (k = 1..levels): the top-1 prediction's level-k code equals
  the target's / its first k codes all do.

A beam is a *hit* when its SID equals the target item's SID, looked up in the item -> SID map: so
items sharing a SID (only possible where the catalog still has collisions) count as hits for each
other, and with a collision-free catalog a hit is exactly the target item. Invalid beams (non-
catalog SIDs) are never hits and stay in the ranking (they occupy their rank).

History exclusion (``exclude_history=True``): beams whose SID is the SID of an item in the sample's
history are dropped, the remaining beams re-ranked in their order, then cut at K. The default
(False) keeps them, as the published protocol does.

Summary: means of the per-sample columns, micro validity (valid beams / all beams), coverage@K
(distinct catalog SIDs among all top-K beams over the number of catalog SIDs; = distinct items over
catalog size for a collision-free catalog), and counts of everything unusual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.evaluation.predictions import check_predictions

log = logging.getLogger(__name__)

CONVENTION_KEPT = ("history items NOT excluded from the ranking (published protocol: a target the "
                   "user already bought can be recommended)")
CONVENTION_EXCLUDED = ("history items EXCLUDED: beams whose SID is a history item's SID are "
                       "dropped, the rest re-ranked, then cut at K")


def convention_text(exclude_history: bool) -> str:
    """The sentence every report prints about the history-exclusion convention."""
    return CONVENTION_EXCLUDED if exclude_history else CONVENTION_KEPT


def ndcg_of_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-row NDCG@k of one relevant item found at 0-based rank ``ranks[i]`` (-1: not found):
    ``1 / log2(r + 2)`` for ``0 <= r < k``, else 0 (the same gain as the ``ndcg@K`` column)."""
    ranks = np.asarray(ranks)
    hit = (ranks >= 0) & (ranks < k)
    return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)


@dataclass(frozen=True)
class RankMetric:
    """A ranking metric at cut-off K, from the 0-based rank of the first hit (null: no hit).

    ``gain(rank, k)`` is the per-row polars expression; ``short`` heads the report's columns
    (``N@10``); ``label`` names it in figures. Adding a metric is one entry of
    :data:`RANK_METRICS` (and its test): the per-row columns, the summary, the bootstrap
    intervals, the paired-test choices and the report tables all follow it.
    """

    name: str
    short: str
    label: str
    gain: Callable[[pl.Expr, int], pl.Expr]


def _recall(rank: pl.Expr, k: int) -> pl.Expr:
    return (rank < k).fill_null(False).cast(pl.Float64)


def _ndcg(rank: pl.Expr, k: int) -> pl.Expr:
    return pl.when(rank < k).then(1.0 / (rank.cast(pl.Float64) + 2.0).log(2)).otherwise(0.0)


#: The ranking metrics, in report order (``<name>@<K>`` for every K of ``metrics.ks``).
RANK_METRICS: dict[str, RankMetric] = {m.name: m for m in (
    RankMetric("recall", "R", "Recall", _recall),
    RankMetric("ndcg", "N", "NDCG", _ndcg),
)}


def metric_names(ks: tuple[int, ...] | list[int], levels: int) -> list[str]:
    """Per-sample metric columns in report order."""
    names = [f"{m}@{k}" for m in RANK_METRICS for k in ks] + ["validity"]
    names += [f"level_acc_{lv}" for lv in range(1, levels + 1)]
    names += [f"prefix_acc_{lv}" for lv in range(1, levels + 1)]
    return names


@dataclass
class MetricsResult:
    """Per-sample metric values (one row per evaluated sample) and their summary."""

    per_sample: pl.DataFrame
    summary: dict[str, Any]


@dataclass
class _Catalog:
    items: pl.DataFrame  # item_id, sid_id
    sids: pl.DataFrame  # key, sid_id, sid_codes
    levels: int


def _key(col: str) -> pl.Expr:
    return pl.col(col).list.eval(pl.element().cast(pl.Utf8)).list.join("_")


def _catalog(sid_table: pl.DataFrame) -> _Catalog:
    missing = [c for c in ("item_id", "codes") if c not in sid_table.columns]
    if missing:
        raise ValueError(f"sid_table: missing columns {missing}")
    table = sid_table.select(pl.col("item_id").cast(pl.Int64),
                             pl.col("codes").cast(pl.List(pl.Int64)))
    if table.height == 0:
        raise ValueError("sid_table: empty catalog")
    if table["item_id"].is_null().any() or table["item_id"].is_duplicated().any():
        raise ValueError("sid_table: item_id must be unique and non-null")
    lengths = table["codes"].list.len().unique().to_list()
    if len(lengths) != 1 or table["codes"].list.eval(pl.element().is_null()).list.any().any():
        raise ValueError(f"sid_table: SIDs must all have one length without nulls, got lengths "
                         f"{sorted(x for x in lengths if x is not None)}")
    table = table.with_columns(key=_key("codes"))
    sids = (table.group_by("key").agg(pl.col("codes").first().alias("sid_codes"))
            .sort("key").with_row_index("sid_id").with_columns(pl.col("sid_id").cast(pl.Int64)))
    items = table.join(sids.select("key", "sid_id"), on="key").select("item_id", "sid_id")
    return _Catalog(items=items, sids=sids, levels=int(lengths[0]))


def _attach_sids(preds: pl.DataFrame, cat: _Catalog) -> pl.DataFrame:
    """Add ``sid_id`` (null for a non-catalog SID) and check ``item_id`` agrees with the codes."""
    out = preds.with_columns(key=_key("codes")).join(
        cat.sids.select("key", "sid_id"), on="key", how="left").drop("key")
    check = out.join(cat.items.rename({"sid_id": "item_sid"}), on="item_id", how="left")
    bad = check.filter(
        (pl.col("item_id").is_not_null() & (pl.col("item_sid").is_null()
                                            | (pl.col("item_sid") != pl.col("sid_id"))
                                            | pl.col("sid_id").is_null()))
        | (pl.col("item_id").is_null() & pl.col("sid_id").is_not_null()))
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"predictions: {bad.height} rows whose item_id disagrees with their codes "
                         f"(item_id must be the catalog item of the SID, null only for a "
                         f"non-catalog SID), e.g. sample_id={r['sample_id']} rank={r['rank']} "
                         f"codes={r['codes']} item_id={r['item_id']}")
    return out


def _targets(samples: pl.DataFrame, cat: _Catalog) -> pl.DataFrame:
    missing = [c for c in ("sample_id", "history", "target") if c not in samples.columns]
    if missing:
        raise ValueError(f"samples: missing columns {missing}")
    rows = samples.select(pl.col("sample_id").cast(pl.Int64), pl.col("target").cast(pl.Int64),
                          pl.col("history").cast(pl.List(pl.Int64)))
    if rows["sample_id"].is_duplicated().any():
        raise ValueError("samples: duplicated sample_id among the evaluated rows")
    rows = rows.join(cat.items.rename({"item_id": "target", "sid_id": "target_sid"}),
                     on="target", how="left")
    bad = rows.filter(pl.col("target_sid").is_null())
    if bad.height:
        raise ValueError(f"samples: {bad.height} targets have no SID in the sid_table, e.g. "
                         f"sample_id={bad['sample_id'][0]} target={bad['target'][0]}")
    return rows.join(cat.sids.select(pl.col("sid_id").alias("target_sid"),
                                     pl.col("sid_codes").alias("target_codes")), on="target_sid")


def _history_sids(rows: pl.DataFrame, cat: _Catalog) -> pl.DataFrame:
    hist = (rows.select("sample_id", pl.col("history").alias("item_id")).explode("item_id")
            .drop_nulls("item_id"))
    hist = hist.join(cat.items, on="item_id", how="left")
    bad = hist.filter(pl.col("sid_id").is_null())
    if bad.height:
        raise ValueError(f"samples: {bad.height} history items have no SID in the sid_table, e.g. "
                         f"sample_id={bad['sample_id'][0]} item_id={bad['item_id'][0]}")
    return hist.select("sample_id", "sid_id").unique()


def compute_metrics(predictions: pl.DataFrame, samples: pl.DataFrame, sid_table: pl.DataFrame,
                    ks: tuple[int, ...] | list[int] = (1, 3, 5, 10),
                    exclude_history: bool = False) -> MetricsResult:
    """Metrics of ``predictions`` on the evaluated ``samples`` (every one must have predictions).

    ``samples``: ``sample_id``, ``history`` (item ids), ``target`` (item id) -- the evaluated rows
    only. ``sid_table``: ``item_id``, ``codes`` (SIDs may collide). Errors name the first bad row.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"compute_metrics: cut-offs must be >= 1, got {ks}")
    cat = _catalog(sid_table)
    preds = _attach_sids(check_predictions(predictions), cat)
    rows = _targets(samples, cat)
    if rows.height == 0:
        raise ValueError("compute_metrics: no samples to evaluate")
    known = rows.select("sample_id")
    extra = preds.join(known, on="sample_id", how="anti")
    if extra.height:
        raise ValueError(f"predictions: {extra['sample_id'].n_unique()} sample_ids are not among "
                         f"the evaluated samples (wrong split?), e.g. {extra['sample_id'][0]}")
    absent = known.join(preds.select("sample_id").unique(), on="sample_id", how="anti")
    if absent.height:
        raise ValueError(f"predictions: {absent.height} evaluated samples have no prediction, "
                         f"e.g. sample_id={absent['sample_id'][0]}")

    hist = _history_sids(rows, cat)
    ranked = preds
    if exclude_history:
        ranked = preds.join(hist, on=["sample_id", "sid_id"], how="anti")  # nulls never match
    ranked = ranked.sort("sample_id", "rank").with_columns(
        eff_rank=pl.int_range(pl.len(), dtype=pl.Int64).over("sample_id"))
    ranked = ranked.join(rows.select("sample_id", "target_sid"), on="sample_id").with_columns(
        hit=(pl.col("sid_id") == pl.col("target_sid")).fill_null(False))

    beams = preds.group_by("sample_id").agg(
        n_beams=pl.len().cast(pl.Int64),
        n_valid=pl.col("sid_id").is_not_null().sum().cast(pl.Int64),
        n_duplicate=(pl.col("sid_id").drop_nulls().len() - pl.col("sid_id").drop_nulls().n_unique())
        .cast(pl.Int64))
    kept = ranked.group_by("sample_id").agg(n_ranked=pl.len().cast(pl.Int64))
    first = ranked.filter(pl.col("hit")).group_by("sample_id").agg(
        hit_rank=pl.col("eff_rank").min())
    top1 = ranked.filter(pl.col("eff_rank") == 0).select("sample_id", pl.col("codes").alias("top1"))
    in_hist = hist.join(rows.select("sample_id", pl.col("target_sid").alias("sid_id")),
                        on=["sample_id", "sid_id"]).select("sample_id").unique().with_columns(
        target_in_history=pl.lit(True))

    per = (rows.select("sample_id", "target_codes")
           .join(beams, on="sample_id", how="left")
           .join(kept, on="sample_id", how="left")
           .join(first, on="sample_id", how="left")
           .join(top1, on="sample_id", how="left")
           .join(in_hist, on="sample_id", how="left")
           .with_columns(pl.col("n_ranked").fill_null(0),
                         pl.col("target_in_history").fill_null(False))
           .sort("sample_id"))
    r = pl.col("hit_rank")
    cols = [metric.gain(r, k).alias(f"{name}@{k}")
            for name, metric in RANK_METRICS.items() for k in ks]
    cols.append((pl.col("n_valid") / pl.col("n_beams")).alias("validity"))
    for lv in range(cat.levels):
        cols.append((pl.col("top1").list.get(lv, null_on_oob=True)
                     == pl.col("target_codes").list.get(lv)).fill_null(False)
                    .alias(f"_eq{lv}"))
    per = per.with_columns(cols)
    acc = []
    prefix = pl.lit(True)
    for lv in range(cat.levels):
        prefix = prefix & pl.col(f"_eq{lv}")
        acc.append(pl.col(f"_eq{lv}").cast(pl.Float64).alias(f"level_acc_{lv + 1}"))
        acc.append(prefix.cast(pl.Float64).alias(f"prefix_acc_{lv + 1}"))
    per = per.with_columns(acc)
    names = metric_names(ks, cat.levels)
    per = per.select("sample_id", "hit_rank", "n_beams", "n_valid", "n_ranked", "n_duplicate",
                     "target_in_history", *names)
    summary = _summarise(per, ranked, preds, cat, ks, exclude_history, names)
    return MetricsResult(per_sample=per, summary=summary)


def _summarise(per: pl.DataFrame, ranked: pl.DataFrame, preds: pl.DataFrame, cat: _Catalog,
               ks: tuple[int, ...], exclude_history: bool, names: list[str]) -> dict[str, Any]:
    n = per.height
    means = {name: float(per[name].mean()) for name in names}
    n_sids = cat.sids.height
    coverage = {}
    for k in ks:
        top = ranked.filter((pl.col("eff_rank") < k) & pl.col("sid_id").is_not_null())
        coverage[f"coverage@{k}"] = float(top["sid_id"].n_unique() / n_sids)
    total = int(preds.height)
    valid = int(preds["sid_id"].is_not_null().sum())
    n_beams = per["n_beams"].to_numpy()
    short = {f"@{k}": int((per["n_ranked"] < k).sum()) for k in ks}
    if any(short.values()):
        log.info("metrics: samples with fewer ranked beams than K: %s", short)
    summary: dict[str, Any] = {
        "n_samples": n,
        "ks": list(ks),
        "levels": cat.levels,
        "exclude_history": bool(exclude_history),
        "convention": convention_text(exclude_history),
        "metrics": means,
        "validity": float(valid / total) if total else None,
        "coverage": coverage,
        "catalog_items": int(cat.items.height),
        "catalog_sids": int(n_sids),
        "catalog_collisions": bool(cat.items.height != n_sids),
        "counts": {
            "beams": total,
            "invalid_beams": total - valid,
            "duplicate_beams": int(per["n_duplicate"].sum()),
            "excluded_history_beams": int(preds.height - ranked.height),
            "beams_per_sample": {"min": int(n_beams.min()), "mean": float(np.mean(n_beams)),
                                 "max": int(n_beams.max())},
            "samples_with_fewer_ranked_beams_than_k": short,
            "targets_in_history": int(per["target_in_history"].sum()),
            "samples_without_hit": int(per["hit_rank"].is_null().sum()),
        },
    }
    return summary
