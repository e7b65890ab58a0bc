"""Timing helpers shared by the decoding benchmarks: warm-up, alternating runs, medians."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from devices import synchronize

log = logging.getLogger("bench.decoding")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    synchronize()
    t0 = time.perf_counter()
    out = fn()
    synchronize()
    return time.perf_counter() - t0, out


def compare(name: str, ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int,
            n_prompts: int) -> tuple[dict[str, Any], Any, Any]:
    """Warm up both, then alternate timed runs; medians in ms per prompt."""
    out_ours, out_theirs = ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        dt, out_ours = timed(ours)
        t_ours.append(dt)
        dt, out_theirs = timed(theirs)
        t_theirs.append(dt)
    ms_ours = 1000 * statistics.median(t_ours) / n_prompts
    ms_theirs = 1000 * statistics.median(t_theirs) / n_prompts
    res = {"ours_ms_per_prompt": round(ms_ours, 2), "theirs_ms_per_prompt": round(ms_theirs, 2),
           "ratio": round(ms_theirs / ms_ours, 2),
           "ours_runs_s": [round(t, 3) for t in t_ours],
           "theirs_runs_s": [round(t, 3) for t in t_theirs]}
    log.info("%s: ours %.1f ms/prompt, theirs %.1f ms/prompt, ratio %.2fx", name, ms_ours,
             ms_theirs, ms_theirs / ms_ours)
    return res, out_ours, out_theirs
