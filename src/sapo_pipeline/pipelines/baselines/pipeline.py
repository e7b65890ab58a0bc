"""Classic baselines, one namespace each (``popularity``, ``sasrec``, ...): fit on train (SASRec
selects its epoch on valid), then top-K predictions on the rows ``evaluate`` scores.

:func:`base_pipeline` is the template (inputs ``samples``, ``sid_table``, ``params:baseline``,
``params:evaluate``; outputs ``baseline_model``, ``baseline_report``,
``baseline_predictions_<split>``, ``baseline_predict_info_<split>``). :func:`create_pipeline`
instantiates it per baseline name; the ``evaluate`` pipeline scores the
``<name>.baseline_predictions_<split>`` datasets with the same code and rows as the generative
models. A variant is one entry
``<name>: {baseline: {kind: ..., ...}}`` in ``parameters_baselines.yml`` plus its name here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline, pipeline

from sapo_pipeline.pipelines.baselines import nodes

DEFAULT_BASELINES: tuple[str, ...] = ("popularity", "sasrec")
SPLITS = ("valid", "test")


def base_pipeline(splits: Sequence[str] = SPLITS) -> Pipeline:
    """The un-namespaced template (one baseline)."""
    return Pipeline([
        Node(nodes.fit_baseline, ["samples", "sid_table", "params:baseline"],
             ["baseline_model", "baseline_report"], name="fit_baseline"),
        *(Node(nodes.make_predict(split),
               ["baseline_model", "samples", "sid_table", "params:baseline", "params:evaluate"],
               [f"baseline_predictions_{split}", f"baseline_predict_info_{split}"],
               name=f"predict_{split}")
          for split in splits),
    ])


def create_pipeline(baselines: Sequence[str] = DEFAULT_BASELINES,
                    splits: Sequence[str] = SPLITS, **kwargs) -> Pipeline:
    """One namespaced copy of :func:`base_pipeline` per baseline name."""
    if not baselines or len(set(baselines)) != len(baselines) or \
            not all(b and b.isidentifier() for b in baselines):
        raise ValueError(f"baselines must be distinct identifiers, got {list(baselines)}")
    base = base_pipeline(splits)
    return sum((pipeline(base, namespace=b, inputs={"samples", "sid_table"},
                         parameters={"params:evaluate"}, tags=["baselines", f"baseline_{b}"])
                for b in baselines), Pipeline([]))
