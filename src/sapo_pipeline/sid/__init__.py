"""Semantic IDs: item-text embeddings, residual quantisation (RQ-VAE / RQ-KMeans), collision
resolution, the item -> SID table and the prefix trie, and the catalog quality report.

Submodules: ``embeddings``, ``rqvae``, ``rqkmeans``, ``collisions``, ``catalog``, ``report``.
Only the light-weight catalog API is re-exported here (importing it does not import torch).
"""

from sapo_pipeline.sid.catalog import (
    SIDTrie,
    build_sid_table,
    format_sid,
    parse_sid,
    sid_tokens,
)

__all__ = ["SIDTrie", "build_sid_table", "format_sid", "parse_sid", "sid_tokens"]
