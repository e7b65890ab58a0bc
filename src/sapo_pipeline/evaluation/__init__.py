"""Evaluation of generative recommenders (METHOD.md §4): predictions, metrics, statistics, report.

* :mod:`.predictions` -- the predictions table (one row per sample and beam rank), evaluated rows.
* :mod:`.predict` -- prompts -> trie-constrained beam search -> predictions (torch, lazily).
* :mod:`.metrics` -- Recall@K / NDCG@K, validity, per-level accuracy, coverage; per-row values.
* :mod:`.stats` -- bootstrap CIs over rows, spread over seeds, paired tests.
* :mod:`.report` -- the comparison table (markdown + JSON), published context, bar chart.
* :mod:`.config` -- typed parameters (``params:evaluate``).

No Kedro here; ``sapo_pipeline.pipelines.evaluate`` wires it.
"""

from sapo_pipeline.evaluation.config import EvaluateConfig
from sapo_pipeline.evaluation.metrics import MetricsResult, compute_metrics
from sapo_pipeline.evaluation.predictions import PREDICTIONS_SCHEMA, select_rows
from sapo_pipeline.evaluation.report import Run, build_report, plot_report, render_markdown
from sapo_pipeline.evaluation.stats import bootstrap_ci, paired_test, seed_summary

__all__ = [
    "PREDICTIONS_SCHEMA",
    "EvaluateConfig",
    "MetricsResult",
    "Run",
    "bootstrap_ci",
    "build_report",
    "compute_metrics",
    "paired_test",
    "plot_report",
    "render_markdown",
    "seed_summary",
    "select_rows",
]
