"""The teacher-corpus report: what was built, what the teacher cost, what it got wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.teacher.corpus import CORPUS_SCHEMA


def length_stats(lengths: Any) -> dict[str, float]:
    """mean / p50 / p95 / max of a sequence of lengths (zeros for an empty sequence)."""
    arr = np.asarray(lengths, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 1),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def corpus_summary(corpus: pl.DataFrame, example_chars: int = 400) -> dict[str, Any]:
    """Rows per task and split, character-length stats, and one train example per task."""
    missing = [c for c in CORPUS_SCHEMA if c not in corpus.columns]
    if missing:
        raise ValueError(f"corpus lacks columns {missing}")
    bad_split = sorted(set(corpus["split"].unique().to_list()) - {"train", "valid"})
    if bad_split:
        raise ValueError(f"corpus has rows of split(s) {bad_split}; only train / valid allowed")
    out: dict[str, Any] = {"rows": corpus.height, "tasks": {}}
    for task in sorted(corpus["task"].unique().to_list()):
        rows = corpus.filter(pl.col("task") == task)
        per_split = {}
        for split in ("train", "valid"):
            part = rows.filter(pl.col("split") == split)
            per_split[split] = {
                "rows": part.height,
                "prompt_chars": length_stats(part["prompt"].str.len_chars().to_numpy()),
                "response_chars": length_stats(part["response"].str.len_chars().to_numpy()),
            }
        example = rows.filter(pl.col("split") == "train").head(1)
        out["tasks"][task] = {
            **per_split,
            "example": {"prompt": example["prompt"][0][:example_chars],
                        "response": example["response"][0][:example_chars]}
            if example.height else None,
        }
    return out


def teacher_report(alignment: pl.DataFrame, reasoning: pl.DataFrame,
                   alignment_stats: dict[str, Any], reasoning_stats: dict[str, Any],
                   config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts per task and split, rejections by reason, teacher cost, lengths, examples."""
    teachers = [alignment_stats.get("teacher", {}), reasoning_stats.get("teacher", {})]
    rejected_total = sum(t.get("rejected_total", 0) for t in teachers)
    return {
        "splits_used": ["train", "valid"],
        "alignment": {**corpus_summary(alignment), "build": alignment_stats},
        "reasoning": {**corpus_summary(reasoning), "build": reasoning_stats},
        "teacher_totals": {
            "backend": teachers[0].get("backend") or teachers[1].get("backend"),
            "model": teachers[0].get("model") or teachers[1].get("model"),
            "requests_made": sum(t.get("requests_made", 0) for t in teachers),
            "retries": sum(t.get("retries", 0) for t in teachers),
            "cache_hits": sum(t.get("cache_hits", 0) for t in teachers),
            "cache_misses": sum(t.get("cache_misses", 0) for t in teachers),
            "rejected": rejected_total,
        },
        "config": config or {},
    }
