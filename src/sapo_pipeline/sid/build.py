"""Embeddings -> quantiser codes -> unique SIDs: the ``sid_catalog`` steps as library calls."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.sid.catalog import build_sid_table
from sapo_pipeline.sid.collisions import resolve_collisions
from sapo_pipeline.sid.config import SIDCatalogConfig
from sapo_pipeline.sid.report import sid_report

log = logging.getLogger(__name__)


@dataclass
class SIDAssignment:
    """What :func:`assign_sids` produces."""

    table: pl.DataFrame  # item_id, codes, sid, code_0.., codes_before
    codes_before: np.ndarray
    resolution: dict[str, Any]
    reconstruction_mse: float
    history: list[dict[str, Any]] = field(default_factory=list)
    quantizer_state: dict[str, Any] | None = None  # RQ-VAE tensors, or RQ-KMeans codebooks


def assign_sids(item_ids: np.ndarray, embeddings: np.ndarray, cfg: SIDCatalogConfig) -> SIDAssignment:
    """Quantise the item embeddings and make every SID unique."""
    if len(item_ids) != len(embeddings):
        raise ValueError(f"{len(item_ids)} items but {len(embeddings)} embeddings")
    if cfg.quantizer == "rqvae":
        from sapo_pipeline.sid.rqvae import train_rqvae

        result = train_rqvae(embeddings, cfg.rqvae)
        state: dict[str, Any] = dict(result.state_dict)
        history = list(result.history)
    else:
        from sapo_pipeline.sid.rqkmeans import fit_rq_kmeans

        result = fit_rq_kmeans(
            embeddings, cfg.levels, cfg.codebook_size, cfg.seed,
            standardize=cfg.rqkmeans.standardize, max_iter=cfg.rqkmeans.max_iter, n_init=cfg.rqkmeans.n_init,
        )
        state = {"codebooks": result.codebooks}
        history = []
    codes, resolution = resolve_collisions(
        result.codes,
        cfg.codebook_size,
        method=cfg.collisions.method,
        last_residuals=result.last_residuals,
        last_codebook=result.codebooks[-1],
        sinkhorn_epsilon=cfg.collisions.sinkhorn_epsilon,
        sinkhorn_iters=cfg.collisions.sinkhorn_iters,
    )
    table = build_sid_table(item_ids, codes).with_columns(
        codes_before=pl.Series(result.codes[np.argsort(item_ids, kind="stable")].tolist(), dtype=pl.List(pl.Int64))
    )
    log.info(
        "SIDs: %d items, collisions %.2f%% -> %.2f%%, %d levels",
        len(item_ids), 100 * resolution["collision_rate_before"], 100 * resolution["collision_rate_after"],
        codes.shape[1],
    )
    return SIDAssignment(table, result.codes, resolution, float(result.reconstruction_mse), history, state)


def catalog_report(
    table: pl.DataFrame,
    resolution: dict[str, Any],
    reconstruction_mse: float,
    history: list[dict[str, Any]],
    cfg: SIDCatalogConfig,
) -> dict[str, Any]:
    """The catalog quality report (sid_report) plus a hard check that every SID is unique."""
    codes = np.array(table["codes"].to_list(), dtype=np.int64)
    before = np.array(table["codes_before"].to_list(), dtype=np.int64)
    report = sid_report(
        codes,
        cfg.levels,
        cfg.codebook_size,
        codes_before=before,
        resolution=resolution,
        reconstruction_mse=reconstruction_mse,
        history=history,
        method=cfg.quantizer,
    )
    report["items"] = table.height
    report["unique_sids"] = int(table["sid"].n_unique())
    if report["unique_sids"] != report["items"] and cfg.quantizer != "published":
        raise ValueError(f"{report['items'] - report['unique_sids']} items still share a SID")
    return report
