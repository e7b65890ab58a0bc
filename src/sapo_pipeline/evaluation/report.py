"""The comparison report: one row per method, CIs, paired tests, published context, a bar chart.

:func:`build_report` gathers the metrics of every evaluated run (one or several runs -- seeds --
per method, all on the same rows) into a JSON-able dict; :func:`render_markdown` prints it;
:func:`plot_report` draws NDCG@K / Recall@K per method with CI error bars.

Headline numbers: the per-row metric averaged over a method's runs, with a percentile bootstrap
CI over rows; with several runs also the mean, std and t-CI over seeds. Paired tests compare the
reference method (``sapo``) with every other method on the same rows. The published numbers of
METHOD.md §5 appear only in their own table, for context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.evaluation.breakdown import GROUP_COLUMN, paired_by_group, render_by_group
from sapo_pipeline.evaluation.metrics import RANK_METRICS, metric_names
from sapo_pipeline.evaluation.published import published_key, published_table
from sapo_pipeline.evaluation.stats import bootstrap_ci, holm, paired_test, seed_summary

SPLIT_ROLES = {"valid": "model selection", "test": "final numbers", "train": "training rows"}


@dataclass
class Run:
    """The metrics of one evaluated model (one run of a method) on one split."""

    method: str
    name: str
    per_sample: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # a classic recommender (popularity, SASRec): marked in the report


def _check_runs(runs: Sequence[Run]) -> tuple[list[int], tuple[int, ...], int, bool]:
    if not runs:
        raise ValueError("build_report: no runs to report")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"build_report: duplicated run names {names}")
    first = runs[0]
    ks, levels = tuple(first.summary["ks"]), int(first.summary["levels"])
    excl = bool(first.summary["exclude_history"])
    ids = sorted(first.per_sample["sample_id"].to_list())
    for r in runs[1:]:
        if (tuple(r.summary["ks"]), int(r.summary["levels"]), bool(r.summary["exclude_history"])) \
                != (ks, levels, excl):
            raise ValueError(f"build_report: run {r.name!r} used other metric settings (ks, levels, "
                             f"exclude_history) than {first.name!r}")
        if sorted(r.per_sample["sample_id"].to_list()) != ids:
            raise ValueError(f"build_report: run {r.name!r} was evaluated on other rows than "
                             f"{first.name!r}; methods must be compared on the same rows")
    return ids, ks, levels, excl


def _method_matrix(runs: Sequence[Run], names: list[str]) -> np.ndarray:
    """[runs, rows, metrics], rows in sample_id order."""
    return np.stack([r.per_sample.sort("sample_id").select(names).to_numpy() for r in runs])


def build_report(runs: Sequence[Run], *, dataset: str, split: str, notes: Sequence[str] = (),
                 reference_method: str = "sapo",
                 paired_metrics: Sequence[str] = ("ndcg@10", "recall@10"),
                 published_reference: str = "auto", n_bootstrap: int = 1000,
                 n_permutations: int = 10000, exact_max_rows: int = 16,
                 confidence: float = 0.95, seed: int = 0,
                 rows_in_split: int | None = None,
                 extra_pairs: Sequence[Sequence[str]] = ()) -> dict[str, Any]:
    """The comparison report of ``runs`` (JSON-able dict; see the module docstring).

    ``extra_pairs``: further ``(method, other)`` paired tests, e.g. every RL method against its
    Stage-2 start (pairs naming a method that was not evaluated are left out)."""
    ids, ks, levels, excl = _check_runs(runs)
    names = metric_names(ks, levels)
    for m in paired_metrics:
        if m not in names:
            raise ValueError(f"build_report: paired metric {m!r} not computed; have {names}")
    methods: dict[str, list[Run]] = {}
    for r in runs:
        methods.setdefault(r.method, []).append(r)
    rows: list[dict[str, Any]] = []
    averaged: dict[str, np.ndarray] = {}
    for method, group in methods.items():
        mat = _method_matrix(group, names)
        avg = mat.mean(axis=0)
        averaged[method] = avg
        cis = bootstrap_ci(avg, n_bootstrap, confidence, seed)
        row: dict[str, Any] = {
            "method": method,
            "baseline": any(r.baseline for r in group),
            "runs": [r.name for r in group],
            "n_seeds": len(group),
            "metrics": {n: {"mean": c.mean, "low": c.low, "high": c.high}
                        for n, c in zip(names, cis)},
            "validity": float(np.mean([r.summary["validity"] for r in group])),
            "coverage": {k: float(np.mean([r.summary["coverage"][k] for r in group]))
                         for k in group[0].summary["coverage"]},
            "counts": [r.summary.get("counts", {}) for r in group],
        }
        if len(group) > 1:
            run_means = mat.mean(axis=1)  # [runs, metrics]
            row["seed_spread"] = {n: seed_summary(run_means[:, j], confidence)
                                  for j, n in enumerate(names)}
        rows.append(row)
    tests: list[dict[str, Any]] = []
    test_note = None
    if reference_method in averaged:
        ref = averaged[reference_method]
        for method, other in averaged.items():
            if method == reference_method:
                continue
            for m in paired_metrics:
                j = names.index(m)
                res = paired_test(ref[:, j], other[:, j], n_bootstrap, n_permutations,
                                  exact_max_rows, confidence, seed)
                tests.append({"reference": reference_method, "other": method, "metric": m,
                              **res.to_dict()})
    else:
        test_note = (f"reference method {reference_method!r} was not evaluated: no paired tests "
                     f"(methods: {list(averaged)})")
    done = {(t["reference"], t["other"]) for t in tests}
    for a, b in extra_pairs:
        if a in averaged and b in averaged and a != b and (a, b) not in done \
                and (b, a) not in done:
            done.add((a, b))
            for m in paired_metrics:
                j = names.index(m)
                res = paired_test(averaged[a][:, j], averaged[b][:, j], n_bootstrap,
                                  n_permutations, exact_max_rows, confidence, seed)
                tests.append({"reference": a, "other": b, "metric": m, **res.to_dict()})
    for t, adj in zip(tests, holm([t["p_value"] for t in tests])):
        t["p_holm"] = adj
    if tests:
        test_note = None
    by_group = None
    if tests and GROUP_COLUMN in runs[0].per_sample.columns:
        flags = runs[0].per_sample.sort("sample_id")[GROUP_COLUMN].fill_null(False).to_numpy()
        by_group = paired_by_group(
            averaged, list(dict.fromkeys((t["reference"], t["other"]) for t in tests)), flags,
            metric=paired_metrics[0], column=names.index(paired_metrics[0]),
            n_bootstrap=n_bootstrap, n_permutations=n_permutations,
            exact_max_rows=exact_max_rows, confidence=confidence, seed=seed)
    key = published_key(dataset, published_reference)
    return {
        "dataset": dataset,
        "split": split,
        "split_role": SPLIT_ROLES.get(split, split),
        "n_rows": len(ids),
        "rows_in_split": rows_in_split,
        "exclude_history": excl,
        "convention": runs[0].summary["convention"],
        "collision_note": _collision_note(runs[0].summary),
        "notes": list(notes),
        "ks": list(ks),
        "levels": levels,
        "confidence": confidence,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "methods": rows,
        "reference_method": reference_method,
        "paired_tests": tests,
        "paired_tests_note": test_note,
        "paired_by_group": by_group,
        "published_reference": published_table(key) if key else None,
    }


def _collision_note(summary: dict[str, Any]) -> str:
    if summary.get("catalog_collisions"):
        return (f"catalog has SID collisions ({summary['catalog_items']} items, "
                f"{summary['catalog_sids']} SIDs): items sharing a SID count as hits for each other")
    return f"collision-free catalog ({summary.get('catalog_items')} items, one SID each)"


def _cell(d: dict[str, Any]) -> str:
    if d.get("low") is None:
        return f"{d['mean']:.4f}"
    return f"{d['mean']:.4f} [{d['low']:.4f}, {d['high']:.4f}]"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: header, our results, paired tests, then published context."""
    pct = round(100 * report["confidence"])
    rows_line = f"{report['n_rows']}"
    if report.get("rows_in_split") and report["rows_in_split"] != report["n_rows"]:
        rows_line += f" (seeded subset of the {report['rows_in_split']} rows of the split)"
    out = [f"# Evaluation report: {report['dataset']}, {report['split']} split", "",
           f"- Data set: {report['dataset']}",
           f"- Split: {report['split']} ({report['split_role']})",
           f"- Rows: {rows_line}",
           f"- Convention: {report['convention']}",
           f"- Catalog: {report['collision_note']}",
           f"- Intervals: {pct}% percentile bootstrap over rows (B={report['n_bootstrap']}, "
           f"seed={report['seed']}); methods with several runs average them per row first"]
    out += [f"- Note: {n}" for n in report["notes"]]
    ks, levels = report["ks"], report["levels"]
    head = (["method", "seeds"] + [f"{m.short}@{k}" for m in RANK_METRICS.values() for k in ks]
            + ["validity", f"coverage@{ks[-1]}"] + [f"acc L{lv}" for lv in range(1, levels + 1)]
            + [f"prefix L{lv}" for lv in range(1, levels + 1)])
    out += ["", f"## Results (this run, {report['split']} split, mean [{pct}% CI])", "",
            _row(head), _row(["---"] * len(head))]
    for m in report["methods"]:
        mt = m["metrics"]
        label = f"{m['method']} (baseline)" if m.get("baseline") else m["method"]
        cells = ([label, str(m["n_seeds"])]
                 + [_cell(mt[f"{name}@{k}"]) for name in RANK_METRICS for k in ks]
                 + [f"{m['validity']:.4f}", f"{m['coverage'][f'coverage@{ks[-1]}']:.4f}"]
                 + [f"{mt[f'level_acc_{lv}']['mean']:.4f}" for lv in range(1, levels + 1)]
                 + [f"{mt[f'prefix_acc_{lv}']['mean']:.4f}" for lv in range(1, levels + 1)])
        out.append(_row(cells))
    spread = [m for m in report["methods"] if "seed_spread" in m]
    if spread:
        out += ["", "### Spread over seeds (mean ± std, t-interval)", "",
                _row(["method", "metric", "mean", "std", f"{pct}% CI"]), _row(["---"] * 5)]
        for m in spread:
            for name in [f"{metric}@{ks[-1]}" for metric in RANK_METRICS]:
                s = m["seed_spread"][name]
                out.append(_row([m["method"], name, f"{s['mean']:.4f}", f"{s['std']:.4f}",
                                 f"[{s['low']:.4f}, {s['high']:.4f}]"]))
    out += ["", f"## Paired tests: {report['reference_method']} vs each other method, and each RL "
                "method vs its Stage-2 start (same rows)", ""]
    if report["paired_tests"]:
        out += ["p-value: two-sided paired sign-flip permutation test; p (Holm): adjusted over "
                "all tests in this table.", "",
                _row(["comparison", "metric", "diff", f"{pct}% CI of diff", "p-value", "p (Holm)",
                      "test", "wins/losses/ties"]), _row(["---"] * 8)]
        for t in report["paired_tests"]:
            out.append(_row([f"{t['reference']} - {t['other']}", t["metric"],
                             f"{t['mean_diff']:+.4f}", f"[{t['low']:+.4f}, {t['high']:+.4f}]",
                             f"{t['p_value']:.4g}", f"{t['p_holm']:.4g}", t["test"],
                             f"{t['wins']}/{t['losses']}/{t['ties']}"]))
        out += render_by_group(report.get("paired_by_group") or {}, pct)
    else:
        out.append(report.get("paired_tests_note") or "No paired tests.")
    pub = report.get("published_reference")
    if pub:
        cols = pub["columns"]
        out += ["", f"## Published reference numbers ({pub['dataset']}; context only, NOT our runs)",
                "", f"Source: {pub['source']}. Other code, backbones and hardware: not directly "
                "comparable with the rows above.", "",
                _row(["published method"] + [_short(c) for c in cols]),
                _row(["---"] * (len(cols) + 1))]
        for r in pub["rows"]:
            out.append(_row([r["method"]] + [f"{r[c]:.4f}" for c in cols]))
    return "\n".join(out) + "\n"


def _short(column: str) -> str:
    """``ndcg@10`` -> ``N@10``."""
    name, _, k = column.partition("@")
    return f"{RANK_METRICS[name].short}@{k}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def plot_report(report: dict[str, Any], k: int | None = None) -> Any:
    """A matplotlib Figure: every ranking metric @k (default: the report's largest K) per method
    with CI error bars (Agg, no pyplot)."""
    from matplotlib.figure import Figure

    k = k or int(max(report.get("ks") or [10]))
    methods = [m["method"] for m in report["methods"]]
    colors = ["#999999" if m.get("baseline") else "#4C72B0" for m in report["methods"]]
    fig = Figure(figsize=(max(6.0, 1.2 * len(methods) + 3), 3.8))
    axes = fig.subplots(1, len(RANK_METRICS), squeeze=False)[0]
    panels = [(f"{name}@{k}", f"{m.label}@{k}") for name, m in RANK_METRICS.items()]
    for ax, (metric, label) in zip(axes, panels, strict=True):
        vals = [m["metrics"][metric] for m in report["methods"]]
        means = np.array([v["mean"] for v in vals])
        err = np.array([[v["mean"] - v["low"] for v in vals], [v["high"] - v["mean"] for v in vals]])
        x = np.arange(len(methods))
        ax.bar(x, means, yerr=np.clip(err, 0, None), capsize=4, color=colors)
        ax.set_xticks(x, methods, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.set_title(f"{label} ({round(100 * report['confidence'])}% CI)")
        ax.set_ylim(bottom=0)
    fig.suptitle(f"{report['dataset']}, {report['split']} split, {report['n_rows']} rows; "
                 f"history {'excluded' if report['exclude_history'] else 'kept'}", fontsize=10)
    fig.tight_layout()
    return fig
