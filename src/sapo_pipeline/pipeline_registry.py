"""Project pipelines: every package under ``pipelines/`` with a ``create_pipeline``.

``sapo_full`` is its own package (it composes the stages), so that Kedro's selective discovery
imports it when it is asked for by name.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines; ``__default__`` is the full experiment."""
    pipelines = find_pipelines(raise_errors=True)
    if "sapo_full" in pipelines:
        pipelines["__default__"] = pipelines["sapo_full"]
    return pipelines
