"""The predictions table (one row per (sample, rank)) and the evaluated rows of a split.

:data:`PREDICTIONS_SCHEMA`: ``sample_id`` Int64, ``rank`` Int64 (0 = best), ``codes``
List[Int64] (the predicted SID), ``item_id`` Int64 (null when the SID is not a catalog item --
impossible with trie-constrained decoding, but the metrics count it), ``score`` Float64
(cumulative SID log-probability of the beam).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.Int64,
    "rank": pl.Int64,
    "codes": pl.List(pl.Int64),
    "item_id": pl.Int64,
    "score": pl.Float64,
}
SPLITS = ("train", "valid", "test")


def check_predictions(preds: pl.DataFrame, name: str = "predictions") -> pl.DataFrame:
    """``preds`` in :data:`PREDICTIONS_SCHEMA` (cast where lossless), sorted by sample and rank.

    Raises ``ValueError`` naming the column and the first offending (sample_id, rank) for a
    missing column, a null key or code, a negative rank or a duplicated (sample_id, rank).
    """
    missing = [c for c in PREDICTIONS_SCHEMA if c not in preds.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; expected {list(PREDICTIONS_SCHEMA)}")
    try:
        out = preds.select([pl.col(c).cast(t, strict=True) for c, t in PREDICTIONS_SCHEMA.items()])
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{name}: columns do not match {PREDICTIONS_SCHEMA}: {exc}") from exc
    for col in ("sample_id", "rank", "codes"):
        bad = out.filter(pl.col(col).is_null())
        if bad.height:
            raise ValueError(f"{name}: {bad.height} rows with null {col!r}, first at row "
                             f"{_first_row(out, pl.col(col).is_null())}")
    bad = out.filter(pl.col("codes").list.eval(pl.element().is_null()).list.any()
                     | (pl.col("codes").list.len() == 0))
    if bad.height:
        raise ValueError(f"{name}: {bad.height} rows whose 'codes' are empty or hold a null, e.g. "
                         f"sample_id={bad['sample_id'][0]} rank={bad['rank'][0]}")
    bad = out.filter(pl.col("rank") < 0)
    if bad.height:
        raise ValueError(f"{name}: negative 'rank' {bad['rank'][0]} at sample_id={bad['sample_id'][0]}")
    dup = out.filter(pl.struct("sample_id", "rank").is_duplicated())
    if dup.height:
        raise ValueError(f"{name}: duplicated (sample_id, rank), e.g. ({dup['sample_id'][0]}, "
                         f"{dup['rank'][0]}); one row per (sample, rank)")
    return out.sort("sample_id", "rank")


def _first_row(df: pl.DataFrame, cond: pl.Expr) -> int:
    return int(df.with_row_index("_i").filter(cond)["_i"][0])


def predictions_from_hits(sample_ids: Sequence[int], hits: Sequence[Sequence[Any]],
                          item_of: Any) -> pl.DataFrame:
    """Build the predictions table from beam-search output.

    ``hits[i]`` are the beams of sample ``sample_ids[i]``: objects with ``codes`` (tuple of ints)
    and ``score`` (float). They are ranked by descending score (ties keep the decoder's order).
    ``item_of(codes)`` returns the catalog item of a SID or raises ``KeyError`` (e.g.
    ``SIDTrie.item_of``); a non-item SID gets a null ``item_id``.
    """
    if len(sample_ids) != len(hits):
        raise ValueError(f"predictions_from_hits: {len(sample_ids)} samples but {len(hits)} beam lists")
    sid_col, rank_col, codes_col, item_col, score_col = [], [], [], [], []
    for sid, beams in zip(sample_ids, hits):
        ordered = sorted(beams, key=lambda h: -float(h.score))
        for rank, hit in enumerate(ordered):
            codes = tuple(int(c) for c in hit.codes)
            try:
                item = int(item_of(codes))
            except KeyError:
                item = None
            sid_col.append(int(sid))
            rank_col.append(rank)
            codes_col.append(list(codes))
            item_col.append(item)
            score_col.append(float(hit.score))
    return pl.DataFrame(
        {"sample_id": sid_col, "rank": rank_col, "codes": codes_col, "item_id": item_col,
         "score": score_col},
        schema=PREDICTIONS_SCHEMA,
    )


def select_rows(samples: pl.DataFrame, split: str, max_samples: int | None = None,
                seed: int = 0) -> pl.DataFrame:
    """The evaluated rows of ``split``, sorted by ``sample_id``.

    With ``max_samples``, a seeded random subset of that size (the same for every model, since it
    depends only on the split's sample ids, ``split`` and ``seed``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    missing = [c for c in ("sample_id", "history", "target", "split") if c not in samples.columns]
    if missing:
        raise ValueError(f"samples: missing columns {missing}")
    rows = samples.filter(pl.col("split") == split).sort("sample_id")
    if rows.height == 0:
        raise ValueError(f"samples: no rows in split {split!r} (splits present: "
                         f"{sorted(samples['split'].unique().to_list())})")
    if rows["sample_id"].is_duplicated().any():
        raise ValueError(f"samples: duplicated sample_id in split {split!r}")
    if max_samples is not None and rows.height > max_samples:
        rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
        pick = np.sort(rng.choice(rows.height, size=max_samples, replace=False))
        rows = rows[pick.tolist()]
    return rows




def predictions_from_items(sample_ids: Sequence[int], items: np.ndarray, scores: np.ndarray,
                           sid_table: pl.DataFrame) -> pl.DataFrame:
    """The predictions table of an item-ranking model (a baseline): ``items[i]`` are sample
    ``sample_ids[i]``'s recommended item ids, best first, ``scores[i]`` their scores.

    Each item is written with its catalog SID (``codes``), so the SID-based metrics treat a
    baseline's ranking exactly like a decoded one. An item without a SID raises ``ValueError``.
    """
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if items.ndim != 2 or items.shape != scores.shape or items.shape[0] != len(sample_ids):
        raise ValueError(f"predictions_from_items: items {items.shape} and scores {scores.shape} "
                         f"must both be [{len(sample_ids)}, K]")
    codes = {int(i): list(c) for i, c in zip(sid_table["item_id"], sid_table["codes"])}
    missing = sorted({int(i) for i in np.unique(items)} - set(codes))
    if missing:
        raise ValueError(f"predictions_from_items: items {missing[:10]} have no SID in sid_table")
    n, k = items.shape
    flat = items.reshape(-1).tolist()
    return pl.DataFrame(
        {"sample_id": np.repeat(np.asarray(sample_ids, dtype=np.int64), k),
         "rank": np.tile(np.arange(k, dtype=np.int64), n),
         "codes": [codes[i] for i in flat], "item_id": flat, "score": scores.reshape(-1)},
        schema=PREDICTIONS_SCHEMA)
