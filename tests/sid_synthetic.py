"""Synthetic item embeddings with a known coarse-to-fine cluster hierarchy (tests, smoke runs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def clustered_embeddings(
    n: int = 2000,
    dim: int = 64,
    branching: Sequence[int] = (8, 8),
    scales: Sequence[float] = (4.0, 1.5),
    noise: float = 0.3,
    duplicates: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian embeddings ``float32 [n, dim]`` and their cluster path ``int64 [n, depth]``.

    A tree with ``branching[k]`` children per node at depth k; each node's centre is its parent's
    plus ``N(0, scales[k]^2)``; each item is a uniformly drawn leaf centre plus ``N(0, noise^2)``.
    ``duplicates`` > 0 makes the last ``duplicates`` rows identical copies of row 0 (an adversarial
    case for collision resolution).
    """
    if len(branching) != len(scales) or not branching:
        raise ValueError("branching and scales must be non-empty and of equal length")
    if n < 1 or dim < 1 or not 0 <= duplicates < n:
        raise ValueError(
            f"need n >= 1, dim >= 1, 0 <= duplicates < n; got {n}, {dim}, {duplicates}"
        )
    rng = np.random.default_rng(seed)
    centres = np.zeros((1, dim))
    for b, s in zip(branching, scales):
        centres = np.repeat(centres, b, axis=0) + rng.normal(0.0, s, (len(centres) * b, dim))
    leaf = rng.integers(0, len(centres), n)
    x = centres[leaf] + rng.normal(0.0, noise, (n, dim))
    labels = np.stack(np.unravel_index(leaf, tuple(branching)), axis=1).astype(np.int64)
    if duplicates:
        x[n - duplicates :] = x[0]
        labels[n - duplicates :] = labels[0]
    return x.astype(np.float32), labels
