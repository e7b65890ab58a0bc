"""Uncertainty of the reported numbers: bootstrap CIs over rows, spread over seeds, paired tests.

* :func:`bootstrap_ci` -- percentile bootstrap CI of the mean of per-row values (several metric
  columns at once share the same resamples). Seeded: the same seed gives the same interval.
* :func:`seed_summary` -- mean, standard deviation and Student-t CI of one number over runs
  (seeds) of a method.
* :func:`paired_test` -- two methods on the same rows: mean difference, its paired-bootstrap CI,
  and the p-value of a two-sided sign-flip permutation test of "no difference" (exact enumeration
  of every sign pattern when few rows differ, Monte-Carlo otherwise, with the +1 correction);
  :func:`holm` adjusts a family of such p-values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_CHUNK_CELLS = 4_000_000  # resample-matrix cells held at once (bounds memory)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval."""

    mean: float
    low: float | None
    high: float | None
    confidence: float
    n: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedResult:
    """Method A minus method B on the same rows."""

    mean_a: float
    mean_b: float
    mean_diff: float
    low: float
    high: float
    p_value: float
    test: str  # "sign-flip exact" | "sign-flip monte-carlo (P=...)" | "identical"
    n: int
    wins: int  # rows where A > B
    losses: int  # rows where A < B
    ties: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_matrix(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty [rows] or [rows, metrics] array, got "
                         f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: values must be finite (found NaN or inf)")
    return arr


def bootstrap_means(values: Any, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` row resamples (with replacement): ``[n_resamples, metrics]``.

    Row counts are drawn per resample and applied to every column, so the columns' resampled
    means are paired. Deterministic for a seed.
    """
    x = _as_matrix(values, "bootstrap_means")
    n = x.shape[0]
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, x.shape[1]))
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, step):
        b = min(step, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(),
                             minlength=b * n).reshape(b, n)
        out[start:start + b] = counts @ x / n
    return out


def _percentiles(means: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def bootstrap_ci(values: Any, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> Interval | list[Interval]:
    """Percentile bootstrap CI of the mean; one :class:`Interval` for a 1-d input, else a list
    (one per column, sharing the resamples)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    one = np.asarray(values).ndim == 1
    x = _as_matrix(values, "bootstrap_ci")
    means = bootstrap_means(x, n_resamples, seed)
    low, high = _percentiles(means, confidence)
    centre = x.mean(axis=0)
    out = [Interval(float(c), float(lo), float(hi), confidence, x.shape[0],
                    f"percentile bootstrap (B={n_resamples}, seed={seed})")
           for c, lo, hi in zip(centre, low, high)]
    return out[0] if one else out


def seed_summary(run_values: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Mean over runs (seeds) with standard deviation and a Student-t CI (None for one run)."""
    from scipy import stats as st

    v = np.asarray(run_values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("seed_summary: no runs")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "std": None, "low": None, "high": None, "n_seeds": 1}
    std = float(v.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, df=v.size - 1) * std / np.sqrt(v.size))
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half,
            "n_seeds": int(v.size)}


def _sign_flip_p(d: np.ndarray, n_permutations: int, exact_max_rows: int,
                 rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided p-value of sum(d) under random sign flips of the non-zero differences."""
    nz = d[d != 0]
    m = nz.size
    if m == 0:
        return 1.0, "identical"
    observed = abs(nz.sum())
    tol = 1e-9 * max(1.0, observed)
    if m <= exact_max_rows:
        patterns = ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1) * 2 - 1
        stats = np.abs(patterns @ nz)
        return float(np.mean(stats >= observed - tol)), "sign-flip exact"
    extreme = 0
    step = max(1, _CHUNK_CELLS // m)
    for start in range(0, n_permutations, step):
        b = min(step, n_permutations - start)
        signs = rng.integers(0, 2, size=(b, m), dtype=np.int8) * 2 - 1
        extreme += int(np.sum(np.abs(signs @ nz) >= observed - tol))
    return (1 + extreme) / (1 + n_permutations), f"sign-flip monte-carlo (P={n_permutations})"


def holm(p_values: Any) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over the given tests), input order."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def paired_test(a: Any, b: Any, n_resamples: int = 1000, n_permutations: int = 10000,
                exact_max_rows: int = 16, confidence: float = 0.95, seed: int = 0) -> PairedResult:
    """Compare per-row values ``a`` and ``b`` of two methods on the same rows (same order)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"paired_test: need two equal-length non-empty arrays, got {x.size} and "
                         f"{y.size} rows")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired_test: values must be finite")
    d = x - y
    rng = np.random.default_rng([seed, 1])
    if np.all(d == 0):
        low = high = 0.0
    else:
        low_a, high_a = _percentiles(bootstrap_means(d, n_resamples, seed), confidence)
        low, high = float(low_a[0]), float(high_a[0])
    p, test = _sign_flip_p(d, n_permutations, exact_max_rows, rng)
    return PairedResult(
        mean_a=float(x.mean()), mean_b=float(y.mean()), mean_diff=float(d.mean()),
        low=low, high=high, p_value=float(p), test=test, n=int(d.size),
        wins=int((d > 0).sum()), losses=int((d < 0).sum()), ties=int((d == 0).sum()),
        confidence=confidence)
