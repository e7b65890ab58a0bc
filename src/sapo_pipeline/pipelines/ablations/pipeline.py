"""The RL namespaces marked ``ablation: true`` in ``parameters_rl.yml``: train, evaluate, report.

Run after ``sapo_full`` on the same run root (``kedro run --pipelines=ablations``, with the same
``--env`` / ``--params``): every ablation starts from that run's ``reason_model`` (as the RL methods
do), is evaluated like them, and the ablation report (``ablations_<split>.json`` / ``.md`` /
``.png``) sets it beside the run's own ``sapo``, ``grpo`` and ``sft_reasoning`` metrics on the same
rows, with the paired tests of SAPO against each ablation and of each ablation against its
Stage-2 start. ``sapo_full`` leaves the ablations out, so ``make run`` does not pay for them.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from sapo_pipeline.pipelines import rl
from sapo_pipeline.pipelines.evaluate.pipeline import (
    STAGE_MODELS,
    model_pipeline,
    report_pipeline,
    rl_model,
)
from sapo_pipeline.pipelines.rl.namespaces import rl_namespaces

#: What the ablations are compared with (trained by ``sapo_full`` on the same run root).
COMPARED = ("sft_reasoning", "grpo", "sapo")


def create_pipeline(**kwargs) -> Pipeline:
    """Train, evaluate and report every ablation namespace (none declared: an empty pipeline)."""
    names = rl_namespaces(ablations=True)
    if not names:
        return Pipeline([])
    main = set(rl_namespaces())
    compared = [STAGE_MODELS[m] if m in STAGE_MODELS else rl_model(m) for m in COMPARED
                if m in STAGE_MODELS or m in main]
    specs = [rl_model(name) for name in names]
    train = rl.create_pipeline(methods=names)
    scored = sum((model_pipeline(spec) for spec in specs), Pipeline([]))
    report = report_pipeline([*compared, *specs], report="ablations", cost=False)
    return train + scored + report  # the report nodes carry the tag ``ablations``
