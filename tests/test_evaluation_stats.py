"""Bootstrap CIs, seed summaries and paired tests of sapo_pipeline.evaluation.stats."""

from __future__ import annotations

import numpy as np
import pytest

from sapo_pipeline.evaluation.stats import bootstrap_ci, bootstrap_means, paired_test, seed_summary


def test_bootstrap_ci_covers_the_mean_and_is_deterministic_for_a_seed():
    x = (np.random.default_rng(1).random(2000) < 0.3).astype(float)
    ci = bootstrap_ci(x, n_resamples=500, seed=7)
    assert ci.low < ci.mean < ci.high and ci.mean == pytest.approx(x.mean())
    # close to the normal approximation of a proportion's interval
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.2)
    assert bootstrap_ci(x, n_resamples=500, seed=7) == ci
    other = bootstrap_ci(x, n_resamples=500, seed=8)
    assert (other.low, other.high) != (ci.low, ci.high)


def test_bootstrap_columns_share_resamples_and_match_one_column_calls():
    rng = np.random.default_rng(0)
    x = rng.random((300, 3))
    together = bootstrap_ci(x, n_resamples=200, seed=3)
    assert len(together) == 3
    for j in range(3):
        alone = bootstrap_ci(x[:, j], n_resamples=200, seed=3)
        assert (alone.low, alone.high) == pytest.approx((together[j].low, together[j].high))
    # a constant column has a zero-width interval
    flat = bootstrap_ci(np.full(50, 0.25), n_resamples=100)
    assert flat.low == flat.high == pytest.approx(0.25)


def test_bootstrap_means_chunking_does_not_change_results(monkeypatch):
    import sapo_pipeline.evaluation.stats as st

    x = np.random.default_rng(2).random(100)
    full = bootstrap_means(x, 64, seed=5)
    monkeypatch.setattr(st, "_CHUNK_CELLS", 700)  # 7 resamples per chunk
    assert np.allclose(bootstrap_means(x, 64, seed=5), full)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci(np.array([1.0, np.nan]))


def test_identical_methods_give_p_one_and_a_zero_difference():
    a = (np.random.default_rng(3).random(400) < 0.2).astype(float)
    res = paired_test(a, a.copy(), seed=0)
    assert res.p_value == 1.0 and res.mean_diff == 0.0 and (res.low, res.high) == (0.0, 0.0)
    assert res.ties == 400 and res.test == "identical"


def test_symmetric_differences_give_p_one():
    a = np.tile([1.0, 0.0], 50)
    b = np.tile([0.0, 1.0], 50)
    res = paired_test(a, b, n_permutations=500)
    assert res.mean_diff == 0.0 and res.p_value == pytest.approx(1.0, abs=1e-9)
    assert res.wins == res.losses == 50


def test_exact_sign_flip_p_value_by_hand():
    # 10 rows, A better on each: only the all-positive and all-negative patterns are as extreme
    a, b = np.ones(10), np.zeros(10)
    res = paired_test(a, b, exact_max_rows=16)
    assert res.test == "sign-flip exact"
    assert res.p_value == pytest.approx(2 / 2**10)
    # 3 rows differing (+1, +1, -1) among ties: |sum| >= 1 for every pattern -> p = 1
    res = paired_test([1, 1, 0, 0.5], [0, 0, 1, 0.5])
    assert res.p_value == pytest.approx(1.0) and res.ties == 1


def test_clearly_better_method_gets_a_small_p_and_a_positive_ci():
    rng = np.random.default_rng(4)
    b = (rng.random(500) < 0.10).astype(float)
    a = np.maximum(b, (rng.random(500) < 0.15).astype(float))  # never worse, often better
    res = paired_test(a, b, n_resamples=500, n_permutations=2000, seed=1)
    assert res.test.startswith("sign-flip monte-carlo")
    assert res.p_value < 0.01 and res.low > 0 and res.mean_diff > 0
    assert res.p_value >= 1 / 2001  # the +1 correction: never exactly 0
    assert paired_test(a, b, n_resamples=500, n_permutations=2000, seed=1) == res


def test_paired_test_rejects_unpaired_input():
    with pytest.raises(ValueError, match="equal-length"):
        paired_test([1, 0], [1, 0, 1])


def test_seed_summary_by_hand():
    s = seed_summary([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t_{0.975, 2}
    assert (s["low"], s["high"]) == pytest.approx((0.2 - half, 0.2 + half))
    one = seed_summary([0.4])
    assert one["n_seeds"] == 1 and one["low"] is None


def test_holm_adjustment_by_hand():
    from sapo_pipeline.evaluation.stats import holm

    # sorted 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
