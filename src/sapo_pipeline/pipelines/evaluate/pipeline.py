"""Per evaluated model (a namespace each): predict + compute_metrics on valid and test; then one
comparison report per split gathering every model (valid: model selection, test: final numbers).

``create_pipeline(models=...)`` takes the models to evaluate -- names of :data:`STAGE_MODELS`,
RL namespaces (those of ``parameters_rl.yml`` by default: :func:`rl_models`),
:data:`BASELINE_MODELS` (predictions made by the ``baselines`` pipeline) or
:class:`~sapo_pipeline.evaluation.predict.ModelSpec` objects (e.g. several seeds of one method) --
so the caller includes only the models whose training stages exist. Dataset names:
``<model>.predictions_<split>``, ``<model>.predict_info_<split>``,
``<model>.sample_metrics_<split>``, ``<model>.metrics_<split>``, ``evaluation_<split>_report``,
``evaluation_<split>_table``, ``evaluation_<split>_figure`` (dataset factories in
``catalog_07_model_output.yml`` / ``catalog_08_reporting.yml``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from sapo_pipeline.evaluation.predict import ModelSpec
from sapo_pipeline.pipelines.evaluate import nodes
from sapo_pipeline.pipelines.rl.namespaces import rl_namespaces

SPLITS = ("valid", "test")
#: The SFT stages' models. ``sft_reasoning_sid`` is the Stage-2 model decoded as ``sid_only`` is
#: (plain layout, the sequence prompt): paired with ``sid_only``, it measures how much of Stage
#: 1's next-SID skill Stage 2 keeps.
STAGE_MODELS: dict[str, ModelSpec] = {
    "sid_only": ModelSpec("sid_only", "align_model", reasoning=False, prompt_task="sid_sequence"),
    "sft_reasoning": ModelSpec("sft_reasoning", "reason_model", reasoning=True,
                               prompt_task="reasoning"),
    "sft_reasoning_sid": ModelSpec("sft_reasoning_sid", "reason_model", reasoning=False,
                                   prompt_task="sid_sequence"),
}


def rl_model(namespace: str) -> ModelSpec:
    """The spec of an RL namespace's model (``<namespace>.rl_model``, its ``rl_log``)."""
    return ModelSpec(namespace, f"{namespace}.rl_model", reasoning=True, prompt_task="reasoning",
                     training_log=f"{namespace}.rl_log")


def rl_models() -> dict[str, ModelSpec]:
    """One spec per RL namespace of ``parameters_rl.yml``."""
    return {name: rl_model(name) for name in rl_namespaces()}
#: Classic baselines (their predictions come from the ``baselines`` pipeline).
BASELINE_MODELS: dict[str, ModelSpec] = {
    name: ModelSpec.for_baseline(name) for name in ("popularity", "sasrec")}
_SHARED = ("samples", "sid_table", "items")
_KEDRO_DOTTED_FLAG = "__dotted_dataset_name_warned__"  # kedro.pipeline.node's warn-once flag
_PARAMS = {"params:evaluate", "params:teacher_corpus"}


def _spec(model: str | ModelSpec, known: dict[str, ModelSpec]) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if model not in known:
        raise ValueError(f"unknown evaluated model {model!r}; known: {list(known)} "
                         f"(or pass a ModelSpec)")
    return known[model]


def model_pipeline(spec: ModelSpec, splits: Sequence[str] = SPLITS) -> Pipeline:
    """predict -> compute_metrics for every split, namespaced ``spec.name``."""
    template = []
    for split in splits:
        if not spec.baseline:
            template.append(Node(
                nodes.make_predict(spec, split),
                ["model", *_SHARED, "params:teacher_corpus", "params:evaluate"],
                [f"predictions_{split}", f"predict_info_{split}"], name=f"predict_{split}"))
        template += [
            Node(nodes.make_compute_metrics(spec, split),
                 [f"predictions_{split}", "samples", "sid_table", "params:evaluate"],
                 [f"sample_metrics_{split}", f"metrics_{split}"], name=f"compute_metrics_{split}"),
        ]
    if spec.baseline:  # predictions made by the baselines pipeline
        inputs = {"samples": "samples", "sid_table": "sid_table",
                  **{f"predictions_{s}": f"{spec.name}.baseline_predictions_{s}" for s in splits}}
    else:
        inputs = {"model": spec.model_input, **{d: d for d in _SHARED}}
    return Pipeline(template, namespace=spec.name, inputs=inputs,
                    parameters={"params:evaluate"} if spec.baseline else _PARAMS,
                    tags=["evaluate", f"evaluate_{spec.name}"])


def create_pipeline(models: Sequence[str | ModelSpec] | None = None,
                    splits: Sequence[str] = SPLITS, **kwargs) -> Pipeline:
    """The evaluation of ``models`` (default: the SFT stages', every RL namespace's and the
    baselines) on ``splits``, with one comparison report per split."""
    known = {**STAGE_MODELS, **rl_models(), **BASELINE_MODELS}  # parameters_rl.yml read once
    if models is None:
        models = tuple(known)
    specs = [_spec(m, known) for m in models]
    if not specs:
        raise ValueError("evaluate: no models to evaluate")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: duplicated model names {names}")
    unknown = sorted(set(splits) - {"train", "valid", "test"})
    if unknown or not splits:
        raise ValueError(f"evaluate: splits must be among train/valid/test, got {list(splits)}")
    pipe = sum((model_pipeline(s, splits) for s in specs), Pipeline([]))
    return pipe + report_pipeline(specs, splits)


def report_pipeline(specs: Sequence[ModelSpec], splits: Sequence[str] = SPLITS,
                    report: str = "evaluation", cost: bool = True) -> Pipeline:
    """One comparison report per split of ``specs`` (``<report>_<split>_report`` / ``_table`` /
    ``_figure``, node ``<report>_report_<split>``; the ``evaluation`` report's node keeps its
    name ``comparison_report_<split>``) and, with ``cost``, the RL training-cost report."""
    # The report nodes read every model's namespaced outputs (``<model>.metrics_test``): their
    # dots are Kedro's namespaces, which its check of a node outside a namespace takes for
    # hand-written dotted names. Its warning is silenced here, and its warn-once flag left as it
    # was, so that a dotted name elsewhere still warns.
    warned = getattr(Node, _KEDRO_DOTTED_FLAG, False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'",
                                category=UserWarning)
        reports = _report_nodes(specs, splits, report, cost)
    setattr(Node, _KEDRO_DOTTED_FLAG, warned)
    return Pipeline(reports)


def _report_nodes(specs: Sequence[ModelSpec], splits: Sequence[str], report: str,
                  cost: bool) -> list[Node]:
    tag = "evaluate" if report == "evaluation" else report
    reports = []
    for split in splits:
        per_model = [f"{s.name}.{kind}_{split}" for s in specs
                     for kind in ("sample_metrics", "metrics")]
        reports.append(Node(
            nodes.make_comparison_report(specs, split, published=report == "evaluation"),
            ["samples", "params:evaluate", *per_model],
            [f"{report}_{split}_report", f"{report}_{split}_table", f"{report}_{split}_figure"],
            name=(f"comparison_report_{split}" if report == "evaluation"
                  else f"{report}_report_{split}"), tags=[tag]))
    trained = [s for s in specs if s.training_log]
    if cost and trained:
        reports.append(Node(
            nodes.make_rl_cost_report(trained), ["params:evaluate", *(s.training_log for s in trained)],
            ["rl_cost_report", "rl_cost_table", "rl_cost_figure"], name="rl_cost_report",
            tags=["evaluate"]))
    return reports
