"""Thin nodes of the ``evaluate`` pipeline; the logic lives in ``sapo_pipeline.evaluation``.

Node functions are made per evaluated model (and split) by the ``make_*`` factories, so that the
model's decoding layout and report row are fixed by the pipeline's structure, not by parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.evaluation.config import EvaluateConfig
from sapo_pipeline.evaluation.metrics import compute_metrics
from sapo_pipeline.evaluation.predict import ModelSpec, predict_rows
from sapo_pipeline.evaluation.predictions import select_rows
from sapo_pipeline.evaluation.report import Run, build_report, plot_report, render_markdown
from sapo_pipeline.rl.cost import plot_costs, render_cost_markdown, summarise_costs
from sapo_pipeline.rl.diagnostics import csv_to_log

log = logging.getLogger(__name__)


def _cfg(params: dict[str, Any]) -> EvaluateConfig:
    return from_dict(EvaluateConfig, params, "evaluate")


def _rows(samples: pl.DataFrame, split: str, cfg: EvaluateConfig) -> pl.DataFrame:
    return select_rows(samples, split, cfg.rows_for(split), cfg.seed)


def make_predict(spec: ModelSpec, split: str) -> Callable[..., tuple[pl.DataFrame, dict]]:
    """Node function: ``spec``'s checkpoint -> predictions on the evaluated rows of ``split``."""

    def predict(model: Any, samples: pl.DataFrame, sid_table: pl.DataFrame, items: pl.DataFrame,
                teacher_params: dict[str, Any], params: dict[str, Any]
                ) -> tuple[pl.DataFrame, dict[str, Any]]:
        from sapo_pipeline.teacher.config import TeacherCorpusConfig

        cfg = _cfg(params)
        prompts = from_dict(TeacherCorpusConfig, teacher_params, "teacher_corpus").prompts
        rows = _rows(samples, split, cfg)
        preds, info = predict_rows(model, rows, sid_table, items, prompts, spec, cfg.decoding)
        return preds, {**info, "split": split, "num_beams": cfg.decoding.num_beams}

    predict.__name__ = predict.__qualname__ = "predict"
    return predict


def make_compute_metrics(spec: ModelSpec, split: str) -> Callable[..., tuple[pl.DataFrame, dict]]:
    """Node function: predictions of ``spec`` on ``split`` -> per-row metrics and their summary."""

    def metrics(predictions: pl.DataFrame, samples: pl.DataFrame, sid_table: pl.DataFrame,
                params: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
        cfg = _cfg(params)
        rows = _rows(samples, split, cfg)
        result = compute_metrics(predictions, rows, sid_table, cfg.metrics.ks,
                                 cfg.metrics.exclude_history)
        log.info("%s %s: %s", spec.name, split,
                 {k: round(v, 4) for k, v in result.summary["metrics"].items() if "@" in k})
        return result.per_sample, {"model": spec.name, "method": spec.label, "split": split,
                                   **result.summary}

    metrics.__name__ = metrics.__qualname__ = "compute_metrics"
    return metrics


def start_pairs(setting: str | Sequence[Sequence[str]], specs: Sequence[ModelSpec]
                ) -> tuple[tuple[str, str], ...]:
    """The paired tests of each model against its start. ``auto``: every evaluated model that has
    an RL training log (every RL namespace, ablations included) against ``sft_reasoning``, and the
    Stage-2 models against ``sid_only`` (what Stage 2 changes: ``sft_reasoning`` in the reasoning
    layout, ``sft_reasoning_sid`` in Stage 1's plain layout), where both are evaluated; an
    explicit list is used as given."""
    if setting == "auto":
        labels = dict.fromkeys(spec.label for spec in specs)
        rl = [spec.label for spec in specs if spec.training_log]
        pairs = [(label, "sft_reasoning") for label in dict.fromkeys(rl)]
        pairs += [(stage2, "sid_only") for stage2 in ("sft_reasoning", "sft_reasoning_sid")
                  if stage2 in labels and "sid_only" in labels]
        return tuple(pairs)
    return tuple((str(a), str(b)) for a, b in setting)


def make_comparison_report(specs: Sequence[ModelSpec], split: str,
                           published: bool = True) -> Callable[..., tuple]:
    """Node function: every model's metrics on ``split`` -> report JSON, markdown, figure
    (``published``: with the published reference numbers of ``evaluate.report``).

    Inputs after ``samples`` and ``params``: per spec (in order) its per-row metrics, then its
    summary.
    """
    specs = list(specs)

    def comparison_report(samples: pl.DataFrame, params: dict[str, Any], *per_model: Any
                          ) -> tuple[dict[str, Any], str, Any]:
        if len(per_model) != 2 * len(specs):
            raise ValueError(f"comparison_report: expected {2 * len(specs)} metric inputs, got "
                             f"{len(per_model)}")
        cfg = _cfg(params)
        runs = [Run(method=spec.label, name=spec.name, per_sample=per_model[2 * i],
                    summary=per_model[2 * i + 1], baseline=spec.baseline)
                for i, spec in enumerate(specs)]
        r, s = cfg.report, cfg.stats
        report = build_report(
            runs, dataset=r.dataset, split=split, notes=r.notes,
            reference_method=r.reference_method, paired_metrics=r.paired_metrics,
            published_reference=r.published_reference if published else "none",
            n_bootstrap=s.n_bootstrap,
            n_permutations=s.n_permutations, exact_max_rows=s.exact_max_rows,
            confidence=s.confidence, seed=s.seed,
            rows_in_split=int((samples["split"] == split).sum()),
            extra_pairs=start_pairs(r.start_pairs, specs))
        report["num_beams"] = cfg.decoding.num_beams
        return report, render_markdown(report), plot_report(report, r.plot_k)

    comparison_report.__name__ = comparison_report.__qualname__ = "comparison_report"
    return comparison_report


def make_rl_cost_report(specs: Sequence[ModelSpec]) -> Callable[..., tuple[dict, str, Any]]:
    """Node function: the RL models' diagnostics logs (in ``specs`` order) -> cost JSON, markdown
    table and figure."""
    specs = list(specs)

    def rl_cost_report(params: dict[str, Any], *logs: str) -> tuple[dict[str, Any], str, Any]:
        r = _cfg(params).report
        by_method = {spec.name: csv_to_log(text) for spec, text in zip(specs, logs, strict=True)}
        reference = r.cost_reference if r.cost_reference in by_method else specs[0].name
        if reference != r.cost_reference:
            log.warning("cost reference %r not evaluated; comparing against %r",
                        r.cost_reference, reference)
        summary = summarise_costs(by_method, reference, r.cost_skip_steps, r.cost_goal)
        for name, c in summary["methods"].items():
            log.info("rl cost %s: median step %.2f s, token ratio vs %s %s", name,
                     c["median_step_s"] or float("nan"), reference,
                     "-" if c["token_ratio"] is None else f"{c['token_ratio']:.3f}")
        return summary, render_cost_markdown(summary), plot_costs(by_method, summary)

    rl_cost_report.__name__ = rl_cost_report.__qualname__ = "rl_cost_report"
    return rl_cost_report
