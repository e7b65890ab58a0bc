"""``evaluate``: beam-search predictions, metrics and the comparison report of trained models."""

from sapo_pipeline.pipelines.evaluate.pipeline import (
    SPLITS,
    STAGE_MODELS,
    create_pipeline,
    rl_model,
    rl_models,
)

__all__ = ["SPLITS", "STAGE_MODELS", "create_pipeline", "rl_model", "rl_models"]
