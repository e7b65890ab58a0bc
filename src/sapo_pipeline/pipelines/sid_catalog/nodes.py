"""Thin nodes of the ``sid_catalog`` pipeline; the logic lives in ``sapo_pipeline.sid``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.parameters import load_section
from sapo_pipeline.sid.build import assign_sids, catalog_report
from sapo_pipeline.sid.catalog import SIDTrie
from sapo_pipeline.sid.embeddings import embed_texts, item_texts
from sapo_pipeline.sid.plots import plot_sid_catalog
from sapo_pipeline.sid.published import published_sid_table
from sapo_pipeline.sid.vectors import residual_code_means

log = logging.getLogger(__name__)


def embed_items(items: pl.DataFrame, params: dict[str, Any]) -> np.ndarray:
    """Sentence embeddings of each item's text (row i = item_id i)."""
    cfg = load_section("sid_catalog", params).embedding
    texts = item_texts(items, fields=cfg.fields, max_chars=cfg.max_chars)
    return embed_texts(texts, model_path=cfg.model_path, batch_size=cfg.batch_size)


def assign_semantic_ids(
    items: pl.DataFrame, item_embeddings: np.ndarray, params: dict[str, Any]
) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Train the quantiser and give every item a unique SID (or take the published index's)."""
    cfg = load_section("sid_catalog", params)
    if cfg.quantizer == "published":
        table, resolution = published_sid_table(items, cfg.published_index, cfg.levels,
                                                cfg.codebook_size)
        codes = np.array(table["codes"].to_list(), dtype=np.int64)
        order = np.searchsorted(table["item_id"].to_numpy(), items["item_id"].to_numpy())
        books = residual_code_means(item_embeddings, codes[order], cfg.codebook_size)
        info = {"resolution": resolution, "reconstruction_mse": None, "history": [],
                "levels_out": cfg.levels}
        return table, {"published_codes": codes, "codebooks": books}, info
    result = assign_sids(items["item_id"].to_numpy(), item_embeddings, cfg)
    info = {
        "resolution": result.resolution,
        "reconstruction_mse": result.reconstruction_mse,
        "history": result.history,
        "levels_out": int(result.table["codes"].list.len().max()),
    }
    return result.table, result.quantizer_state, info


def build_sid_trie(sid_table: pl.DataFrame) -> dict[str, Any]:
    """The prefix trie over every SID (what constrained decoding walks)."""
    trie = SIDTrie.from_table(sid_table)
    log.info("SID trie: %d SIDs", len(trie))
    return trie.to_dict()


def report_sid_catalog(sid_table: pl.DataFrame, sid_assignment: dict[str, Any], params: dict[str, Any]):
    """Collisions, utilisation, entropy, reconstruction loss, training curve; and a figure."""
    cfg = load_section("sid_catalog", params)
    report = catalog_report(
        sid_table, sid_assignment["resolution"], sid_assignment["reconstruction_mse"],
        sid_assignment["history"], cfg,
    )
    codes = np.array(sid_table["codes_before"].to_list(), dtype=np.int64)
    figure = plot_sid_catalog(codes, sid_assignment["history"], cfg.codebook_size, cfg.levels)
    return report, figure
