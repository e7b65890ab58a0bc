"""Where a paired difference comes from: the rows split by whether the target is a repeat.

A test row whose target item is already in its history (a re-purchase; ``target_in_history`` in
the per-row metrics, kept in the ranking under the published protocol) is easy for a model that
learned to copy and hard for one that did not, so a few such rows can carry much of a method's
NDCG. :func:`paired_by_group` splits each paired comparison of a report into the rows with a
repeat target and the rest, and gives per group: its rows and share, both methods' means, the
mean difference inside the group with its own paired test (:func:`~.stats.paired_test`), and
the group's contribution to the overall difference (share x group difference; the
contributions of the groups add up to the overall difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sapo_pipeline.evaluation.stats import paired_test

GROUP_COLUMN = "target_in_history"
GROUPS = (("repeat target", True), ("new target", False))


def paired_by_group(averaged: Mapping[str, np.ndarray], pairs: Sequence[Sequence[str]],
                    in_history: np.ndarray, *, metric: str, column: int,
                    n_bootstrap: int = 1000, n_permutations: int = 10000,
                    exact_max_rows: int = 16, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, Any]:
    """Each ``(a, b)`` of ``pairs``: ``a - b`` on ``metric`` (column ``column`` of the per-row
    matrices ``averaged[method]``, rows aligned with ``in_history``), per group of rows."""
    flags = np.asarray(in_history, dtype=bool).ravel()
    n = flags.size
    rows = []
    for a, b in pairs:
        x, y = averaged[a][:, column], averaged[b][:, column]
        if x.shape != (n,) or y.shape != (n,):
            raise ValueError(f"paired_by_group: {a} / {b} have {x.shape[0]} / {y.shape[0]} rows, "
                             f"the group column {n}")
        overall = float((x - y).mean())
        for label, value in GROUPS:
            pick = flags == value
            k = int(pick.sum())
            row: dict[str, Any] = {"reference": a, "other": b, "group": label, "rows": k,
                                   "share": k / n, "overall_diff": overall}
            if k:
                res = paired_test(x[pick], y[pick], n_bootstrap, n_permutations, exact_max_rows,
                                  confidence, seed)
                row |= {"mean_a": res.mean_a, "mean_b": res.mean_b, "mean_diff": res.mean_diff,
                        "low": res.low, "high": res.high, "p_value": res.p_value,
                        "contribution": k / n * res.mean_diff}
            rows.append(row)
    return {"column": GROUP_COLUMN, "metric": metric, "rows": rows}


def render_by_group(table: Mapping[str, Any], pct: int) -> list[str]:
    """Markdown lines of :func:`paired_by_group`'s table (empty when no row is a repeat)."""
    rows = table.get("rows") or []
    if not any(r["group"] == GROUPS[0][0] and r["rows"] for r in rows):
        return []
    out = ["", f"### Where the {table['metric']} differences come from: rows whose target is in "
               "the history (repeat) and the rest", "",
           "contribution = the group's share of the rows x its mean difference; the two "
           "contributions add up to the overall difference. p: paired sign-flip test inside the "
           "group (not adjusted).", "",
           "| comparison | overall diff | group | rows (share) | mean a / b | diff in group "
           f"[{pct}% CI] | p | contribution |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        head = f"{r['reference']} - {r['other']}"
        if not r["rows"]:
            out.append(f"| {head} | {r['overall_diff']:+.4f} | {r['group']} | 0 | | | | |")
            continue
        out.append(f"| {head} | {r['overall_diff']:+.4f} | {r['group']} | {r['rows']} "
                   f"({r['share']:.1%}) | {r['mean_a']:.4f} / {r['mean_b']:.4f} | "
                   f"{r['mean_diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | "
                   f"{r['p_value']:.3g} | {r['contribution']:+.4f} |")
    return out
