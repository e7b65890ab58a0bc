"""``sid_catalog``: item text -> embeddings -> RQ-VAE / RQ-KMeans codes -> unique SIDs + trie."""

from sapo_pipeline.pipelines.sid_catalog.pipeline import create_pipeline

__all__ = ["create_pipeline"]
