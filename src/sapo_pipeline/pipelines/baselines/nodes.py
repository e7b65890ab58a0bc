"""Thin nodes of the ``baselines`` pipeline; the logic lives in ``sapo_pipeline.baselines``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.baselines.registry import KINDS, baseline_config_from_dict
from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.evaluation.config import EvaluateConfig
from sapo_pipeline.evaluation.predictions import predictions_from_items, select_rows

log = logging.getLogger(__name__)


def _n_items(sid_table: pl.DataFrame) -> int:
    return int(sid_table["item_id"].max()) + 1


def fit_baseline(samples: pl.DataFrame, sid_table: pl.DataFrame, baseline: dict[str, Any]
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the namespace's baseline on the train split (selection on valid where it has any)."""
    kind, cfg = baseline_config_from_dict(baseline)
    state, report = KINDS[kind].fit(samples, _n_items(sid_table), cfg)
    return state, {"kind": kind, **report}


def make_predict(split: str) -> Callable[..., tuple[pl.DataFrame, dict[str, Any]]]:
    """Node function: the fitted baseline's top-K on the evaluated rows of ``split`` (the rows
    and K of ``params:evaluate``, as every generative model is decoded)."""

    def predict(state: dict[str, np.ndarray], samples: pl.DataFrame, sid_table: pl.DataFrame,
                baseline: dict[str, Any], params: dict[str, Any]
                ) -> tuple[pl.DataFrame, dict[str, Any]]:
        kind, cfg = baseline_config_from_dict(baseline)
        ev = from_dict(EvaluateConfig, params, "evaluate")
        rows = select_rows(samples, split, ev.rows_for(split), ev.seed)
        start = time.perf_counter()
        items, scores = KINDS[kind].rank(state, [list(h) for h in rows["history"]], cfg,
                                         ev.decoding.num_beams)
        seconds = time.perf_counter() - start
        preds = predictions_from_items(rows["sample_id"].to_list(), items, scores, sid_table)
        log.info("%s: %d %s rows ranked in %.1fs", kind, rows.height, split, seconds)
        return preds, {"model": kind, "baseline": True, "rows": rows.height,
                       "beams": preds.height, "seconds": round(seconds, 3), "split": split,
                       "num_beams": ev.decoding.num_beams}

    predict.__name__ = predict.__qualname__ = "predict"
    return predict
