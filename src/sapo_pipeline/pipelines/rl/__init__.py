"""``rl``: Stage 3, one namespaced copy per RL method (grpo, sapo, rere) from the stage-2 model."""

from sapo_pipeline.pipelines.rl.pipeline import DEFAULT_METHODS, base_pipeline, create_pipeline

__all__ = ["DEFAULT_METHODS", "base_pipeline", "create_pipeline"]
