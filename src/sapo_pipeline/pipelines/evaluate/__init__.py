"""``evaluate``: beam-search predictions, metrics and the comparison report of trained models."""

from sapo_pipeline.pipelines.evaluate.pipeline import DEFAULT_MODELS, SPLITS, create_pipeline

__all__ = ["DEFAULT_MODELS", "SPLITS", "create_pipeline"]
