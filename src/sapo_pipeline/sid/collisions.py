"""Make every item's SID unique.

Two methods, chosen by ``method``:

``"sinkhorn"``
    For every prefix (first K-1 codes) that holds colliding items, the items whose full SID is
    unique keep their code; the colliding items ("movers") are re-assigned over the last-level
    codes nobody else under that prefix uses. The assignment is an optimal transport from movers
    to free codes (cost = squared distance from the mover's last-level residual to the code
    vector; each free code has capacity ``ceil(movers / free)``, a zero-cost dummy row absorbs
    unused capacity), solved with log-domain Sinkhorn and rounded to a hard assignment that
    respects the capacities (Hungarian algorithm on ``-log plan``, which equals the cost adjusted
    by Sinkhorn's per-code prices). With enough free codes this ends collision-free; a prefix
    with more items than codes cannot, and then falls back to the extra level below (its movers
    are spread evenly first, so the extra level stays short).
``"extra_level"``
    Append a de-duplication code: the item's index among the items sharing its K codes (ordered
    by row), spelled with the next level letter (``<d_0>``, ``<d_1>``, ...).

Choice (documented): when an extra level is needed, *every* item gets it (``<d_0>`` for items
that did not collide), so all SIDs keep one length; when nothing collides no level is added
unless ``always_extra_level``. The report's ``levels_out`` and ``extra_level_size`` say which
happened (``extra_level_size`` = codes needed on the extra level, for the tokenizer).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

METHODS = ("sinkhorn", "extra_level")


def _group_ids(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: id of its distinct code row, and the size of that group."""
    if codes.shape[1] == 0:
        return np.zeros(len(codes), dtype=np.int64), np.full(len(codes), len(codes))
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    return inverse, counts[inverse]


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    """Collision rate (share of items sharing a full SID), colliding SIDs, max group size."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return {
            "collision_rate": 0.0,
            "colliding_items": 0,
            "colliding_sids": 0,
            "max_group_size": 0,
            "unique_sids": 0,
        }
    inverse, sizes = _group_ids(codes)
    colliding = sizes > 1
    return {
        "collision_rate": float(colliding.mean()),
        "colliding_items": int(colliding.sum()),
        "colliding_sids": len(np.unique(inverse[colliding])),
        "max_group_size": int(sizes.max()),
        "unique_sids": len(np.unique(inverse)),
    }


def _lse(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def sinkhorn_plan(
    cost: np.ndarray,
    row_mass: np.ndarray,
    col_mass: np.ndarray,
    epsilon: float,
    iters: int,
    tol: float = 1e-6,
) -> np.ndarray:
    """Log of the entropic OT plan for ``cost`` with the given (equal-total) marginals.

    Log-domain Sinkhorn iterations; stops early once the column marginals are met to ``tol``
    (relative), checked every 10 iterations.
    """
    log_k = -cost / epsilon
    log_r, log_c = np.log(row_mass), np.log(col_mass)
    f = np.zeros(len(row_mass))
    g = np.zeros(len(col_mass))
    for it in range(iters):
        f = log_r - _lse(log_k + g[None, :], axis=1)
        g = log_c - _lse(log_k + f[:, None], axis=0)
        if it % 10 == 9:  # rows are exact after the f-update; check them after the g-update
            rows = np.exp(_lse(log_k + f[:, None] + g[None, :], axis=1))
            if np.abs(rows - row_mass).max() <= tol * row_mass.max():
                break
    return f[:, None] + log_k + g[None, :]


def _round_greedy(log_plan: np.ndarray, cap: int) -> np.ndarray:
    """Hard assignment by decreasing plan value, at most ``cap`` rows per column."""
    m, a = log_plan.shape
    out = np.full(m, -1, dtype=np.int64)
    left = np.full(a, cap)
    done = 0
    for flat in np.argsort(-log_plan, axis=None, kind="stable"):
        i, j = divmod(int(flat), a)
        if out[i] < 0 and left[j] > 0:
            out[i] = j
            left[j] -= 1
            done += 1
            if done == m:
                break
    return out


def _assign_group(
    res: np.ndarray,
    book: np.ndarray,
    free: np.ndarray,
    epsilon: float,
    iters: int,
    exact_limit: int = 2_000_000,
) -> np.ndarray:
    """Capacity-respecting balanced assignment of residual rows ``res`` to codes ``free``."""
    m, a = len(res), len(free)
    cap = math.ceil(m / a)
    r64, b64 = res.astype(np.float64), book[free].astype(np.float64)
    cost = np.maximum((r64**2).sum(1)[:, None] - 2.0 * r64 @ b64.T + (b64**2).sum(1)[None], 0)
    scale = cost.max()
    cost = cost / scale if scale > 0 else cost
    slack = a * cap - m
    rows = np.ones(m)
    if slack > 0:  # dummy row absorbing unused capacity at zero cost
        cost = np.vstack([cost, np.zeros((1, a))])
        rows = np.append(rows, float(slack))
    log_plan = sinkhorn_plan(cost, rows, np.full(a, float(cap)), epsilon, iters)[:m]
    if m * a * cap > exact_limit:  # huge overfull groups: greedy rounding (still capacity-safe)
        return free[_round_greedy(log_plan, cap)]
    # replicate each code ``cap`` times, one slot per unit of capacity, and round exactly
    slots = np.repeat(np.arange(a), cap)
    r, c = linear_sum_assignment(-log_plan[:, slots])
    out = np.empty(m, dtype=np.int64)
    out[r] = free[slots[c]]
    return out


def _sinkhorn_last_level(
    codes: np.ndarray,
    codebook_size: int,
    last_residuals: np.ndarray,
    last_codebook: np.ndarray,
    epsilon: float,
    iters: int,
) -> tuple[np.ndarray, int, int, int]:
    codes = codes.copy()
    _, sizes = _group_ids(codes)
    movers_mask = sizes > 1
    prefix_ids, _ = _group_ids(codes[:, :-1])
    touched = np.unique(prefix_ids[movers_mask])
    reassigned = overfull = 0
    for p in touched:
        members = np.flatnonzero(prefix_ids == p)
        movers = members[movers_mask[members]]
        taken = np.zeros(codebook_size, dtype=bool)
        taken[codes[members[~movers_mask[members]], -1]] = True
        free = np.flatnonzero(~taken)
        if len(free) == 0:  # every code held by a unique item: the movers must share one
            overfull += 1
            continue
        if len(movers) > len(free):
            overfull += 1
        new = _assign_group(last_residuals[movers], last_codebook, free, epsilon, iters)
        reassigned += int((new != codes[movers, -1]).sum())
        codes[movers, -1] = new
    return codes, reassigned, len(touched), overfull


def add_extra_level(codes: np.ndarray) -> np.ndarray:
    """Append the index of each item among the items sharing its codes (row order)."""
    inverse, _ = _group_ids(codes)
    order = np.lexsort((np.arange(len(codes)), inverse))
    extra = np.empty(len(codes), dtype=np.int64)
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    extra[order] = np.arange(len(codes)) - run_start
    return np.concatenate([codes, extra[:, None]], axis=1)


def resolve_collisions(
    codes: np.ndarray,
    codebook_size: int,
    method: str = "sinkhorn",
    last_residuals: np.ndarray | None = None,
    last_codebook: np.ndarray | None = None,
    sinkhorn_epsilon: float = 0.05,
    sinkhorn_iters: int = 100,
    always_extra_level: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Unique SIDs for every item: new codes ``int64 [n, K or K+1]`` and a JSON-able report.

    ``last_residuals`` ``[n, d]`` (the input of the last quantiser) and ``last_codebook``
    ``[C, d]`` are required for ``"sinkhorn"`` (RQ-VAE: ``RQVAEResult.last_residuals`` and
    ``codebooks[-1]``; RQ-KMeans: ``RQKMeansResult.last_residuals`` and ``codebooks[-1]``).
    """
    if method not in METHODS:
        raise ValueError(f"resolve_collisions: method must be one of {METHODS}, got {method!r}")
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ValueError(f"resolve_collisions: codes must be [n, K>=1], got shape {codes.shape}")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"resolve_collisions: codes must be integers, got {codes.dtype}")
    codes = codes.astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(
            f"resolve_collisions: codes outside [0, {codebook_size}): "
            f"min {codes.min()}, max {codes.max()}"
        )
    if sinkhorn_epsilon <= 0 or sinkhorn_iters < 1:
        raise ValueError("resolve_collisions: sinkhorn_epsilon must be > 0 and iters >= 1")
    n, levels = codes.shape
    before = collision_stats(codes)
    report: dict[str, Any] = {
        "method": method,
        "n_items": int(n),
        "levels_in": int(levels),
        "collision_rate_before": before["collision_rate"],
        "colliding_items_before": before["colliding_items"],
        "colliding_sids_before": before["colliding_sids"],
        "max_group_size_before": before["max_group_size"],
        "items_reassigned": 0,
        "prefixes_touched": 0,
        "prefixes_overfull": 0,
    }
    out = codes
    if method == "sinkhorn" and before["colliding_items"]:
        if last_residuals is None or last_codebook is None:
            raise ValueError(
                "resolve_collisions: method 'sinkhorn' needs last_residuals [n, d] "
                "and last_codebook [C, d]"
            )
        res = np.asarray(last_residuals, dtype=np.float32)
        book = np.asarray(last_codebook, dtype=np.float32)
        if res.shape[0] != n or book.ndim != 2 or res.ndim != 2 or res.shape[1] != book.shape[1]:
            raise ValueError(
                f"resolve_collisions: shapes do not fit: codes {codes.shape}, "
                f"last_residuals {res.shape}, last_codebook {book.shape}"
            )
        if book.shape[0] != codebook_size:
            raise ValueError(
                f"resolve_collisions: last_codebook has {book.shape[0]} rows, "
                f"codebook_size is {codebook_size}"
            )
        out, moved, touched, overfull = _sinkhorn_last_level(
            codes, codebook_size, res, book, sinkhorn_epsilon, sinkhorn_iters
        )
        report.update(items_reassigned=moved, prefixes_touched=touched, prefixes_overfull=overfull)
    mid = collision_stats(out)
    report["collision_rate_after_reassignment"] = mid["collision_rate"]
    if mid["colliding_items"] > 0 or always_extra_level:
        out = add_extra_level(out)
    report["extra_level_added"] = bool(out.shape[1] > levels)
    added = report["extra_level_added"] and len(out) > 0
    report["extra_level_size"] = int(out[:, -1].max() + 1) if added else 0
    after = collision_stats(out)
    if after["colliding_items"]:
        raise RuntimeError(f"resolve_collisions: {after['colliding_items']} items still collide")
    report.update(
        levels_out=int(out.shape[1]),
        collision_rate_after=after["collision_rate"],
        max_group_size_after=after["max_group_size"],
        max_group_size_before_extra_level=mid["max_group_size"],
    )
    if report["extra_level_size"] > codebook_size:
        logger.warning(
            "extra SID level needs %d codes (> codebook_size %d); pass "
            "extra_level_size to sid_tokens",
            report["extra_level_size"],
            codebook_size,
        )
    logger.info(
        "resolve_collisions(%s): collision rate %.4f -> %.4f, %d items re-assigned, "
        "levels %d -> %d",
        method,
        report["collision_rate_before"],
        report["collision_rate_after"],
        report["items_reassigned"],
        levels,
        report["levels_out"],
    )
    return out, report
