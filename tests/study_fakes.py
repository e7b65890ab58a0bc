"""Fabricated run roots of a study (several seeds of one data set) whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from sapo_pipeline.evaluation.metrics import metric_names

KS, LEVELS, ROWS = (1, 5, 10), 3, 200
NAMES = metric_names(KS, LEVELS)
MODELS = {"sft_reasoning": False, "grpo": False, "sapo": False, "popularity": True}


def summary(model: str) -> dict:
    return {"model": model, "method": model, "split": "test", "ks": list(KS), "levels": LEVELS,
            "exclude_history": False, "validity": 1.0, "coverage": {"coverage@10": 0.5},
            "counts": {}, "convention": "history kept", "catalog_collisions": False,
            "catalog_items": 50, "catalog_sids": 50, "n_samples": ROWS}


def fake_root(root: Path, values: dict[str, np.ndarray]) -> Path:
    """A run root as the evaluate pipeline leaves it: per model its per-row metrics (every
    metric column = ``values[model]``) and summary, and the run's report."""
    for model, per_row in values.items():
        out = root / "07_model_output" / "evaluate" / model
        out.mkdir(parents=True)
        pl.DataFrame({"sample_id": np.arange(ROWS)[::-1],  # any order: matched by sample_id
                      **{n: per_row[::-1] for n in NAMES}}).write_parquet(
            out / "sample_metrics_test.parquet")
        rep = root / "08_reporting" / "evaluate" / model
        rep.mkdir(parents=True)
        (rep / "metrics_test.json").write_text(json.dumps(summary(model)))
    report = {"methods": [{"method": m, "runs": [m], "baseline": MODELS[m]} for m in values],
              "paired_tests": [{"reference": "sapo", "other": m} for m in values if m != "sapo"]
              + [{"reference": "grpo", "other": "sft_reasoning"}]}
    (root / "08_reporting" / "evaluation_test.json").write_text(json.dumps(report))
    return root


def study_roots(tmp_path: Path, seeds: int = 3) -> tuple[list[Path], dict[str, np.ndarray]]:
    """Per seed s: sft_reasoning = base + 0.02 s, sapo = sft_reasoning + 0.1 on every row,
    grpo = sft_reasoning, popularity = 0.05."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.0, 0.5, ROWS)
    roots, per_seed = [], {m: [] for m in MODELS}
    for s in range(seeds):
        sft = base + 0.02 * s
        values = {"sft_reasoning": sft, "grpo": sft.copy(), "sapo": sft + 0.1,
                  "popularity": np.full(ROWS, 0.05)}
        roots.append(fake_root(tmp_path / f"seed{s}", values))
        for m, v in values.items():
            per_seed[m].append(v)
    return roots, {m: np.stack(v) for m, v in per_seed.items()}
