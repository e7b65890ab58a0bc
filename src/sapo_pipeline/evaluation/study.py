"""The study: the runs (seeds) of one data set, read back from their run roots, in one report.

A run root (``kedro run --params "run_root=<dir>,seed=<n>"``) holds, per evaluated model, its
per-row metrics (``07_model_output/evaluate/<model>/sample_metrics_<split>.parquet``) and summary
(``08_reporting/evaluate/<model>/metrics_<split>.json``), and the run's comparison report
(``08_reporting/evaluation_<split>.json``, which says which models are baselines).
:func:`load_run` reads them back as :class:`~.report.Run` objects; :func:`build_study` reports
several roots together through :func:`~.report.build_report`, so every method gets:

* the mean over seeds and rows, with a **two-level bootstrap CI**: each resample draws the seeds
  with replacement, then the test rows with replacement (one row draw shared by the seeds: every
  seed is scored on the same rows), so the interval carries the spread between seeds as well as
  the sampling of rows (:func:`two_level_ci`);
* the mean, standard deviation and t-interval over seeds (``seed_spread``);
* paired tests on the same rows, each row's value averaged over the seeds (pooled across seeds),
  Holm-adjusted: the family of each run's own report (SAPO against every other method -- GRPO,
  ReRe, the Stage-2 model, the baselines -- and every RL method against its Stage-2 start).

Every root must hold the same models evaluated on the same rows with the same metric settings;
anything else is an error naming the root.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.evaluation.metrics import metric_names
from sapo_pipeline.evaluation.report import Run, build_report
from sapo_pipeline.evaluation.stats import Interval

log = logging.getLogger(__name__)


def load_run(root: str | Path, split: str = "test", label: str | None = None,
             report: str = "evaluation") -> list[Run]:
    """Every model of the run under ``root`` on ``split`` in its ``<report>_<split>.json``
    (``evaluation``: sapo_full's; ``ablations``: the ablations pipeline's), named
    ``<model>@<label>`` (default label: the root's folder name)."""
    root = Path(root)
    report_path = root / "08_reporting" / f"{report}_{split}.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{root}: no {report_path.relative_to(root)} (was the evaluate "
                                f"pipeline run with run_root={root}?)")
    content = json.loads(report_path.read_text(encoding="utf-8"))
    label = label or root.name
    runs = []
    for row in content["methods"]:
        for model in row["runs"]:
            metrics = root / "07_model_output" / "evaluate" / model / f"sample_metrics_{split}.parquet"
            summary = root / "08_reporting" / "evaluate" / model / f"metrics_{split}.json"
            for path in (metrics, summary):
                if not path.is_file():
                    raise FileNotFoundError(f"{root}: {model} is in the report but "
                                            f"{path.relative_to(root)} is missing")
            runs.append(Run(method=row["method"], name=f"{model}@{label}",
                            per_sample=pl.read_parquet(metrics),
                            summary=json.loads(summary.read_text(encoding="utf-8")),
                            baseline=bool(row.get("baseline"))))
    return runs


def _run_report(root: str | Path, split: str, report: str) -> dict[str, Any]:
    path = Path(root) / "08_reporting" / f"{report}_{split}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def run_pairs(root: str | Path, split: str = "test",
              report: str = "evaluation") -> list[tuple[str, str]]:
    """The paired tests of one run's own report (SAPO against every method, each RL method
    against its Stage-2 start, ...), so that the study tests the same family."""
    tests = _run_report(root, split, report)["paired_tests"]
    return list(dict.fromkeys((t["reference"], t["other"]) for t in tests))


def run_metrics(root: str | Path, split: str = "test",
                report: str = "evaluation") -> tuple[str, ...]:
    """The metrics of the paired tests of one run's own report, in order."""
    tests = _run_report(root, split, report)["paired_tests"]
    return tuple(dict.fromkeys(t["metric"] for t in tests if "metric" in t))


def two_level_ci(values: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> list[Interval]:
    """Percentile CIs of the mean of ``values`` ``[seeds, rows, metrics]`` (rows aligned across
    seeds), resampling seeds and then rows, both with replacement (module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or 0 in values.shape:
        raise ValueError(f"two_level_ci: expected [seeds, rows, metrics], got {values.shape}")
    s, n, m = values.shape
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, m))
    for b in range(n_resamples):
        seeds = rng.integers(0, s, size=s)
        rows = rng.integers(0, n, size=n)
        means[b] = values[seeds][:, rows].mean(axis=(0, 1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    point = values.mean(axis=(0, 1))
    method = f"two-level bootstrap (seeds, then rows; {n_resamples} resamples)"
    return [Interval(float(point[j]), float(low[j]), float(high[j]), confidence, s * n, method)
            for j in range(m)]


def _same_models(per_root: Sequence[list[Run]], roots: Sequence[Path]) -> None:
    first = sorted(r.method for r in per_root[0])
    for root, runs in zip(roots[1:], per_root[1:]):
        if sorted(r.method for r in runs) != first:
            raise ValueError(f"build_study: {root} evaluated {sorted(r.method for r in runs)}, "
                             f"{roots[0]} evaluated {first}; every seed needs the same models")


def build_study(roots: Sequence[str | Path], *, dataset: str, split: str = "test",
                reference_method: str = "sapo", n_bootstrap: int = 1000,
                n_permutations: int = 10000, confidence: float = 0.95, seed: int = 0,
                paired_metrics: Sequence[str] | None = None,
                report_name: str = "evaluation") -> dict[str, Any]:
    """The report of the runs under ``roots`` (one per seed), with two-level CIs, from each
    run's ``<report_name>_<split>.json`` (``evaluation`` or ``ablations``); the paired metrics
    default to those of the first run's report."""
    roots = [Path(r) for r in roots]
    if len({r.resolve() for r in roots}) != len(roots):
        raise ValueError(f"build_study: a run root is listed twice: {[str(r) for r in roots]}")
    per_root = [load_run(root, split, f"{i}:{root.name}", report_name)
                for i, root in enumerate(roots)]
    _same_models(per_root, roots)
    runs = [run for runs in per_root for run in runs]
    if paired_metrics is None:
        paired_metrics = run_metrics(roots[0], split, report_name) or ("ndcg@10", "recall@10")
    report = build_report(
        runs, dataset=dataset, split=split, reference_method=reference_method,
        paired_metrics=paired_metrics, n_bootstrap=n_bootstrap, n_permutations=n_permutations,
        confidence=confidence, seed=seed, extra_pairs=run_pairs(roots[0], split, report_name),
        notes=[*_run_report(roots[0], split, report_name).get("notes", []),
               f"{len(roots)} runs (seeds): " + ", ".join(str(r) for r in roots),
               "CIs: two-level bootstrap, seeds then rows; paired tests on the rows, each row "
               "averaged over the seeds"])
    first = per_root[0][0]
    names = metric_names(tuple(first.summary["ks"]), int(first.summary["levels"]))
    for row in report["methods"]:
        group = [r for r in runs if r.method == row["method"]]
        mat = np.stack([r.per_sample.sort("sample_id").select(names).to_numpy() for r in group])
        cis = two_level_ci(mat, n_bootstrap, confidence, seed)
        row["metrics"] = {n: {"mean": c.mean, "low": c.low, "high": c.high}
                          for n, c in zip(names, cis)}
    report["ci_method"] = cis[0].method if report["methods"] else None
    report["run_roots"] = [str(r) for r in roots]
    report["report_name"] = report_name
    return report


def write_study(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``study_<split>.json``, ``.md`` and ``.png`` under ``out_dir`` (written atomically;
    ``ablations_study_<split>.*`` for a study of the ablations reports)."""
    from sapo_pipeline.evaluation.report import plot_report, render_markdown
    from sapo_pipeline.io_utils import atomic_path, write_text_atomically

    out = Path(out_dir)
    name = report.get("report_name", "evaluation")
    stem = out / (f"study_{report['split']}" if name == "evaluation"
                  else f"{name}_study_{report['split']}")
    write_text_atomically(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomically(stem.with_suffix(".md"), render_markdown(report))
    with atomic_path(stem.with_suffix(".png")) as tmp:
        plot_report(report).savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return [stem.with_suffix(x) for x in (".json", ".md", ".png")]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sapo_pipeline.evaluation.study ROOT [ROOT ...] --dataset NAME --out DIR``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.evaluation.study",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", help="run roots, one per seed")
    parser.add_argument("--dataset", required=True, help="the data set's name in the report")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="folder for study_<split>.json/.md/.png")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--report", default="evaluation",
                        help="the run reports to aggregate: evaluation (sapo_full) | ablations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = build_study(args.roots, dataset=args.dataset, split=args.split,
                         n_bootstrap=args.n_bootstrap, report_name=args.report)
    for path in write_study(report, args.out):
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
