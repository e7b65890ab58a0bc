"""Popularity: the train split's most frequent items, the same ranking for every user."""

from __future__ import annotations

import numpy as np
import polars as pl

from sapo_pipeline.baselines.config import PopularityConfig
from sapo_pipeline.data.sequences import user_sequences


def item_counts(samples: pl.DataFrame, n_items: int, cfg: PopularityConfig) -> np.ndarray:
    """``[n_items]`` train counts (``cfg.count``: every item of the train sequences, or targets)."""
    if cfg.count == "targets":
        targets = samples.filter(pl.col("split") == "train")["target"].to_numpy()
        flat = targets
    else:
        seqs = user_sequences(samples, "train").items
        flat = np.fromiter((i for s in seqs for i in s), dtype=np.int64)
    if len(flat) and (flat.min() < 0 or flat.max() >= n_items):
        raise ValueError(f"popularity: item ids outside [0, {n_items}) in the train split")
    return np.bincount(flat, minlength=n_items).astype(np.float64)


def popularity_ranking(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most counted items and their counts; ties go to the smaller item id."""
    order = np.lexsort((np.arange(len(counts)), -counts))[:k]
    return order, counts[order]

