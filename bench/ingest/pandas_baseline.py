"""A straightforward pandas implementation of the same ingest steps, for the benchmark only.

Same inputs (Amazon-2023 JSONL), same steps and rules as ``sapo_pipeline.data``: parse, dedupe
(user, item, timestamp), drop items without title, iterative k-core, per-user order by
(timestamp, line), sliding windows of the previous N items, global chronological 8:1:1 split.
Written the way a careful pandas user would (vectorised, no per-row Python in the hot path
where pandas offers an alternative), not as a straw man.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def run(reviews_path: Path, meta_path: Path, k: int = 5, max_history: int = 10) -> dict:
    reviews = pd.read_json(reviews_path, lines=True, dtype=False)
    reviews = reviews[["user_id", "parent_asin", "timestamp", "rating"]].rename(columns={"parent_asin": "asin"})
    reviews["timestamp"] = reviews["timestamp"] // 1000
    reviews["seq"] = np.arange(1, len(reviews) + 1)
    meta = pd.read_json(meta_path, lines=True, dtype=False)
    meta = meta[["parent_asin", "title", "store", "categories", "description"]].rename(
        columns={"parent_asin": "asin"}
    )

    reviews = reviews[~reviews.duplicated(["user_id", "asin", "timestamp"], keep="first")]
    titled = meta[meta["title"].fillna("").str.strip() != ""]
    reviews = reviews[reviews["asin"].isin(titled["asin"])]

    while True:  # iterative k-core
        users = reviews.groupby("user_id")["asin"].transform("size")
        items = reviews.groupby("asin")["user_id"].transform("size")
        kept = reviews[(users >= k) & (items >= k)]
        if len(kept) == len(reviews):
            break
        reviews = kept

    catalog = titled[titled["asin"].isin(reviews["asin"])].sort_values("asin").reset_index(drop=True)
    catalog["item_id"] = np.arange(len(catalog))
    reviews = reviews.merge(catalog[["asin", "item_id"]], on="asin", how="inner")
    reviews = reviews.sort_values(["user_id", "timestamp", "seq"], kind="stable").reset_index(drop=True)

    grouped = reviews.groupby("user_id", sort=False)["item_id"]
    lags = pd.concat({lag: grouped.shift(lag) for lag in range(max_history, 0, -1)}, axis=1)
    reviews["pos"] = reviews.groupby("user_id", sort=False).cumcount()
    samples = reviews[reviews["pos"] > 0][["user_id", "item_id", "timestamp", "pos"]].copy()
    lag_values = lags.loc[samples.index].to_numpy()
    samples["history"] = [row[~np.isnan(row)].astype(np.int64).tolist() for row in lag_values]
    samples = samples.rename(columns={"item_id": "target"})

    samples = samples.sort_values(["timestamp", "user_id", "pos"], kind="stable").reset_index(drop=True)
    n = len(samples)
    n_train, n_valid_end = int(n * 0.8), int(n * 0.9)
    split = np.full(n, "test", dtype=object)
    split[:n_train] = "train"
    split[n_train:n_valid_end] = "valid"
    samples["split"] = split
    return {
        "items": int(len(catalog)),
        "interactions": int(len(reviews)),
        "samples": {s: int((samples["split"] == s).sum()) for s in ("train", "valid", "test")},
        "history_items": int(sum(len(h) for h in samples["history"])),
    }
