"""Stage-2 model + samples -> RL model, per-step diagnostics (CSV) and their figure.

:func:`base_pipeline` is the template (inputs ``reason_model``, ``samples``, ``items``,
``sid_table``, ``params:teacher_corpus``, ``params:rl``; outputs ``rl_model``, ``rl_log``,
``rl_figure``). :func:`create_pipeline` instantiates it once per method with
``kedro.pipeline.pipeline(namespace=method)``: the shared inputs keep their names, ``params:rl``
becomes ``params:<method>.rl`` (Kedro 1.x namespaces parameters) and the outputs become
``<method>.rl_model`` etc. (dataset factories in ``catalog_06_models.yml`` /
``catalog_08_reporting.yml``). Every method thus starts from the same ``reason_model``. The
namespaces are those of ``parameters_rl.yml`` (:func:`~.namespaces.rl_namespaces`): an ablation
is one parameters entry ``<name>: {rl: {algorithm: ..., ...}}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline, pipeline

from sapo_pipeline.pipelines.rl import nodes
from sapo_pipeline.pipelines.rl.namespaces import rl_namespaces

SHARED_INPUTS = frozenset({"reason_model", "samples", "items", "sid_table"})
SHARED_PARAMETERS = frozenset({"params:teacher_corpus"})


def base_pipeline() -> Pipeline:
    """The un-namespaced template (one RL method)."""
    return Pipeline(
        [
            Node(
                nodes.train_rl_model,
                ["reason_model", "samples", "items", "sid_table", "params:teacher_corpus",
                 "params:rl"],
                ["rl_model", "rl_log"],
                name="train_rl_model",
            ),
            Node(nodes.plot_rl_log, ["rl_log", "params:rl"], "rl_figure", name="plot_rl_log"),
        ]
    )


def create_pipeline(methods: Sequence[str] | None = None, **kwargs) -> Pipeline:
    """One namespaced copy of :func:`base_pipeline` per RL namespace (default: those of
    ``parameters_rl.yml``)."""
    base = base_pipeline()
    if methods is None:
        methods = rl_namespaces()
    if len(set(methods)) != len(methods) or not all(m and m.isidentifier() for m in methods):
        raise ValueError(f"rl methods must be distinct identifiers, got {list(methods)}")
    return sum(
        (pipeline(base, namespace=m, inputs=set(SHARED_INPUTS),
                  parameters=set(SHARED_PARAMETERS), tags=["rl", f"rl_{m}"]) for m in methods),
        Pipeline([]),
    )
