"""``sapo_full``: the whole experiment, raw data to report, as one pipeline."""

from sapo_pipeline.pipelines.sapo_full.pipeline import create_pipeline

__all__ = ["create_pipeline"]
