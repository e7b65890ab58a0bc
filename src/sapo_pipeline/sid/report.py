"""Quality report of a SID catalog: collisions, per-level code utilisation and entropy.

Definitions (all over items, one SID per item):

* collision rate: share of items whose full SID is shared with at least one other item;
* utilisation of level k: distinct codes used at level k / codebook size; for k > 0 also the mean,
  over the distinct parent prefixes (codes of levels < k), of distinct children / codebook size;
* entropy of level k: Shannon entropy (bits) of the level-k code distribution, normalised by
  log2(codebook size); conditional entropy H(code_k | prefix) in bits as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sapo_pipeline.sid.collisions import collision_stats


def _entropy_bits(labels: np.ndarray) -> float:
    if len(labels) == 0:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _row_ids(codes: np.ndarray) -> np.ndarray:
    if codes.shape[1] == 0:
        return np.zeros(len(codes), dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.reshape(-1)


def level_stats(codes: np.ndarray, level: int, codebook_size: int) -> dict[str, Any]:
    """Utilisation and entropy of one level (see module docstring)."""
    col = codes[:, level]
    used = len(np.unique(col))
    h = _entropy_bits(col)
    out: dict[str, Any] = {
        "level": level,
        "codes_used": used,
        "utilisation": used / codebook_size,
        "entropy_bits": h,
        "entropy_normalised": h / math.log2(codebook_size) if codebook_size > 1 else 0.0,
    }
    if level > 0:
        parent = _row_ids(codes[:, :level])
        joint = _row_ids(codes[:, : level + 1])
        n_parents = int(parent.max()) + 1
        # distinct children per parent = distinct (parent, child) pairs per parent
        pair_parent = np.zeros(int(joint.max()) + 1, dtype=np.int64)
        pair_parent[joint] = parent
        children = np.bincount(pair_parent, minlength=n_parents)
        out.update(
            parents=n_parents,
            mean_children_per_parent=float(children.mean()),
            mean_utilisation_under_parent=float((children / codebook_size).mean()),
            conditional_entropy_bits=_entropy_bits(joint) - _entropy_bits(parent),
        )
    else:
        out["conditional_entropy_bits"] = h
    return out


def _clean_history(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def conv(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v)
        return v

    return [{k: conv(v) for k, v in row.items()} for row in history]


def sid_report(
    codes: np.ndarray,
    levels: int,
    codebook_size: int,
    codes_before: np.ndarray | None = None,
    resolution: dict[str, Any] | None = None,
    reconstruction_mse: float | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """JSON-serialisable quality report of a SID assignment.

    ``codes`` are the final codes (``levels`` regular levels, optionally one extra
    de-duplication level after them); ``codes_before`` the quantiser's codes before collision
    resolution; ``resolution`` the report of ``resolve_collisions``; ``reconstruction_mse`` and
    ``history`` come from the quantiser (``RQVAEResult`` / ``RQKMeansResult``).
    Per-level statistics are computed on the regular levels of the *quantiser* codes when given
    (``codes_before``), since resolution only moves colliding items on the last level; the final
    codes' levels are reported under ``levels_final``.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < levels:
        raise ValueError(f"sid_report: codes must be [n, >= {levels}], got shape {codes.shape}")
    if codebook_size < 1:
        raise ValueError(f"sid_report: codebook_size must be >= 1, got {codebook_size}")
    base = np.asarray(codes_before) if codes_before is not None else codes[:, :levels]
    if base.shape != (len(codes), levels):
        raise ValueError(
            f"sid_report: codes_before must be [{len(codes)}, {levels}], got {base.shape}"
        )
    after = collision_stats(codes)
    before = collision_stats(base)
    report: dict[str, Any] = {
        "method": method,
        "n_items": len(codes),
        "levels": int(levels),
        "codebook_size": int(codebook_size),
        "sid_length": int(codes.shape[1]),
        "capacity": int(codebook_size) ** int(levels),
        "collision_rate_before": before["collision_rate"],
        "collision_rate_after": after["collision_rate"],
        "max_items_per_sid_before": before["max_group_size"],
        "max_items_per_sid": after["max_group_size"],
        "unique_sids": after["unique_sids"],
        "all_unique": bool(after["max_group_size"] <= 1),
        "levels_stats": [level_stats(base, k, codebook_size) for k in range(levels)],
        "levels_final": [level_stats(codes[:, :levels], k, codebook_size) for k in range(levels)],
    }
    if codes.shape[1] > levels:
        extra = codes[:, levels]
        report["extra_level"] = {
            "size": int(extra.max()) + 1,
            "items_nonzero": int((extra > 0).sum()),
        }
    if resolution is not None:
        report["resolution"] = _clean_history([resolution])[0]
    report["reconstruction_mse"] = None if reconstruction_mse is None else float(reconstruction_mse)
    report["training_curve"] = _clean_history(history) if history else []
    return report
