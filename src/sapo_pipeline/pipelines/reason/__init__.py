"""``reason``: Stage 2, reasoning activation (SFT on step-aligned teacher traces from Stage 1)."""

from sapo_pipeline.pipelines.reason.pipeline import create_pipeline

__all__ = ["create_pipeline"]
