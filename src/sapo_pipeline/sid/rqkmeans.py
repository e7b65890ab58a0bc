"""Residual k-means (RQ-KMeans): level by level, k-means on what the previous levels left over.

Level 1 clusters the (optionally standardised) embeddings into ``codebook_size`` centroids; each
item's residual (embedding minus its centroid) is clustered at level 2, and so on. When a level
has fewer distinct residuals than ``codebook_size`` (tiny catalogs, many identical items), k-means
runs with as many clusters as there are distinct residuals and the remaining codebook rows are
filled with copies of real centroids (so every code index has a vector, and the collision resolver
can spread identical items over them); the report counts such levels.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)


def fit_codebook(
    x: np.ndarray, codebook_size: int, seed: int, max_iter: int = 100, n_init: int = 1
) -> tuple[np.ndarray, int]:
    """k-means centroids ``[codebook_size, d]`` (float32) for ``x``, and the number of real ones.

    With at most ``codebook_size`` distinct rows, the distinct rows themselves are the centroids
    and the remaining rows repeat them cyclically (a copy is never strictly nearer than its
    original, and ties go to the lowest index, so plain nearest-code assignment never picks a
    copy; the collision resolver may, to spread identical items).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"fit_codebook: need a non-empty 2-d array, got shape {x.shape}")
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    distinct_rows = np.unique(x, axis=0)  # k-means cannot make more clusters than this
    k = min(codebook_size, len(distinct_rows))
    if k == len(distinct_rows):
        centroids = distinct_rows  # every distinct row is its own (exact) centroid
    else:
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
        km.fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    if k < codebook_size:
        fill = centroids[np.arange(codebook_size - k) % k]
        centroids = np.concatenate([centroids, fill], axis=0)
    return centroids.astype(np.float32), k


def nearest_code(x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook row for every row of ``x`` (ties -> lowest index)."""
    d = (
        (x.astype(np.float64) ** 2).sum(1, keepdims=True)
        - 2.0 * x.astype(np.float64) @ codebook.astype(np.float64).T
        + (codebook.astype(np.float64) ** 2).sum(1)[None, :]
    )
    return d.argmin(axis=1).astype(np.int64)


@dataclass
class RQKMeansResult:
    """Output of :func:`fit_rq_kmeans`."""

    codes: np.ndarray = field(metadata={"help": "int64 [n, levels] code per item and level."})
    codebooks: np.ndarray = field(metadata={"help": "float32 [levels, C, d] centroids per level."})
    last_residuals: np.ndarray = field(
        metadata={"help": "float32 [n, d] the input of the last level (for collision resolution)."}
    )
    distinct_clusters: list[int] = field(
        metadata={"help": "real (non-filler) centroids per level; < C where residuals ran out."}
    )
    mean: np.ndarray | None = field(default=None, metadata={"help": "standardisation mean."})
    std: np.ndarray | None = field(default=None, metadata={"help": "standardisation std."})
    reconstruction_mse: float = field(
        default=float("nan"),
        metadata={"help": "mean squared error of the summed centroids vs the (scaled) input."},
    )

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable scalars."""
        return {
            "levels": int(self.codes.shape[1]),
            "distinct_clusters": list(self.distinct_clusters),
            "reconstruction_mse": float(self.reconstruction_mse),
        }


def fit_rq_kmeans(
    embeddings: np.ndarray,
    levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    standardize: bool = False,
    max_iter: int = 100,
    n_init: int = 1,
    num_threads: int | None = 1,
) -> RQKMeansResult:
    """Residual k-means with ``levels`` codebooks of ``codebook_size`` centroids each.

    ``num_threads`` caps the OpenMP/BLAS threads k-means uses (None = library default); 1 keeps
    results independent of the machine's core count.
    """
    limits = threadpool_limits(num_threads) if num_threads else nullcontext()
    with limits:
        return _fit_rq_kmeans(
            embeddings, levels, codebook_size, seed, standardize, max_iter, n_init
        )


def _fit_rq_kmeans(
    embeddings: np.ndarray,
    levels: int,
    codebook_size: int,
    seed: int,
    standardize: bool,
    max_iter: int,
    n_init: int,
) -> RQKMeansResult:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"rq_kmeans: embeddings must be a non-empty 2-d array, got {x.shape}")
    if not np.isfinite(x).all():
        bad = np.unique(np.where(~np.isfinite(x))[0])[:10].tolist()
        raise ValueError(f"rq_kmeans: non-finite embedding values in rows {bad}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    mean = std = None
    if standardize:
        mean = x.mean(0)
        std = np.maximum(x.std(0), 1e-6)
        x = (x - mean) / std
    residual = x.copy()
    codes = np.zeros((len(x), levels), dtype=np.int64)
    books, distinct = [], []
    last_residuals = residual
    for level in range(levels):
        last_residuals = residual.copy()
        book, k = fit_codebook(residual, codebook_size, seed + level, max_iter, n_init)
        if k < codebook_size:
            logger.info(
                "rq_kmeans level %d: only %d distinct residuals for %d codes; filled the rest "
                "with copies",
                level,
                k,
                codebook_size,
            )
        idx = nearest_code(residual, book)
        codes[:, level] = idx
        residual = residual - book[idx]
        books.append(book)
        distinct.append(int(k))
    mse = float((residual.astype(np.float64) ** 2).mean())
    return RQKMeansResult(
        codes=codes,
        codebooks=np.stack(books).astype(np.float32),
        last_residuals=last_residuals.astype(np.float32),
        distinct_clusters=distinct,
        mean=mean,
        std=std,
        reconstruction_mse=mse,
    )


def rq_kmeans(
    embeddings: np.ndarray, levels: int = 3, codebook_size: int = 256, seed: int = 0, **kwargs: Any
) -> np.ndarray:
    """Codes ``int64 [n, levels]`` from residual k-means (see :func:`fit_rq_kmeans`)."""
    return fit_rq_kmeans(embeddings, levels, codebook_size, seed, **kwargs).codes
