"""``ingest``: raw Amazon data -> catalog, interactions, split samples, ingest report."""

from sapo_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
