"""``baselines``: popularity and SASRec, scored by ``evaluate`` on the generative models' rows."""

from sapo_pipeline.pipelines.baselines.pipeline import create_pipeline

__all__ = ["create_pipeline"]
