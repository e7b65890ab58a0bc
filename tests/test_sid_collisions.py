"""RQ-KMeans, collision resolution (sinkhorn / extra level) and the SID report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sid_synthetic import clustered_embeddings

from sapo_pipeline.sid.catalog import SIDTrie, build_sid_table, format_sid, sid_tokens
from sapo_pipeline.sid.collisions import (
    add_extra_level,
    collision_stats,
    resolve_collisions,
)
from sapo_pipeline.sid.report import sid_report
from sapo_pipeline.sid.rqkmeans import fit_codebook, fit_rq_kmeans, rq_kmeans


@pytest.fixture(scope="module")
def clustered():
    return clustered_embeddings(n=2000, dim=64, branching=(8, 8), seed=0)


@pytest.fixture(scope="module")
def rqk(clustered):
    return fit_rq_kmeans(clustered[0], levels=3, codebook_size=16, seed=0)


# -- RQ-KMeans ------------------------------------------------------------------------------
def test_rq_kmeans_codes_shape_range_and_determinism(clustered, rqk):
    x, _ = clustered
    assert rqk.codes.shape == (2000, 3) and rqk.codes.dtype == np.int64
    assert rqk.codes.min() >= 0 and rqk.codes.max() < 16
    assert rqk.codebooks.shape == (3, 16, 64)
    np.testing.assert_array_equal(rq_kmeans(x, 3, 16, seed=0), rqk.codes)
    # residual quantisation: every level lowers the reconstruction error
    recon = np.zeros_like(x)
    errs = []
    for level in range(3):
        recon = recon + rqk.codebooks[level][rqk.codes[:, level]]
        errs.append(float(((x - recon) ** 2).mean()))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] == pytest.approx(rqk.reconstruction_mse, rel=1e-4)
    # the last level's input is the embedding minus the first two levels
    two = rqk.codebooks[0][rqk.codes[:, 0]] + rqk.codebooks[1][rqk.codes[:, 1]]
    np.testing.assert_allclose(rqk.last_residuals, x - two, atol=1e-4)


def test_rq_kmeans_utilisation_floor_and_hierarchy(clustered, rqk):
    _, labels = clustered
    rep = sid_report(rqk.codes, 3, 16, reconstruction_mse=rqk.reconstruction_mse)
    level1 = rep["levels_stats"][0]
    # measured (seeds 0-3): utilisation 1.0, normalised entropy 0.944-0.957
    assert level1["utilisation"] >= 0.9
    assert level1["entropy_normalised"] >= 0.85
    code0 = rqk.codes[:, 0]
    purity = sum(np.bincount(labels[code0 == c, 0]).max() for c in np.unique(code0)) / 2000
    assert purity >= 0.95  # measured 1.0


def test_codebook_larger_than_distinct_residuals():
    x = np.repeat(np.eye(3, 5, dtype=np.float32), [4, 3, 2], axis=0)  # 9 rows, 3 distinct
    book, k = fit_codebook(x, 8, seed=0)
    assert k == 3 and book.shape == (8, 5)
    res = fit_rq_kmeans(x, levels=2, codebook_size=8, seed=0)
    assert res.distinct_clusters == [3, 1]  # level 2 residuals are all zero
    assert res.codes[:, 0].tolist() == res.codes[:, 0].tolist() and res.codes.max() < 8
    assert len(np.unique(res.codes[:, 0])) == 3
    # tiny catalog: fewer items than codes
    tiny = fit_rq_kmeans(np.arange(6, dtype=np.float32).reshape(3, 2), 3, 256, seed=0)
    assert tiny.codes.shape == (3, 3) and tiny.distinct_clusters[0] == 3


def test_rq_kmeans_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        fit_rq_kmeans(np.array([[1.0, np.inf]], dtype=np.float32), 1, 2)
    with pytest.raises(ValueError, match="2-d"):
        fit_rq_kmeans(np.zeros((0, 3), dtype=np.float32), 1, 2)


# -- collisions -----------------------------------------------------------------------------
def _assert_unique(codes):
    assert len(np.unique(codes, axis=0)) == len(codes)


@pytest.mark.parametrize("method", ["sinkhorn", "extra_level"])
def test_resolution_makes_all_sids_unique(rqk, method):
    before = collision_stats(rqk.codes)
    assert before["collision_rate"] > 0.5  # the clustered data collides heavily at C=16
    codes, rep = resolve_collisions(
        rqk.codes,
        16,
        method=method,
        last_residuals=rqk.last_residuals,
        last_codebook=rqk.codebooks[-1],
    )
    _assert_unique(codes)
    assert rep["collision_rate_after"] == 0.0 and rep["max_group_size_after"] == 1
    assert rep["collision_rate_before"] == pytest.approx(before["collision_rate"])
    np.testing.assert_array_equal(codes[:, :2], rqk.codes[:, :2])  # prefixes never move
    json.dumps(rep)
    SIDTrie(np.arange(len(codes)), codes)  # a valid catalog
    if method == "extra_level":
        assert rep["levels_out"] == 4 and rep["items_reassigned"] == 0
        np.testing.assert_array_equal(codes[:, :3], rqk.codes)
    else:
        assert rep["items_reassigned"] > 0
        # sinkhorn spreads collisions over free last-level codes before any extra level:
        # the extra level (if any) is much shorter than plain de-duplication needs
        plain = resolve_collisions(rqk.codes, 16, method="extra_level")[1]
        assert rep["extra_level_size"] < plain["extra_level_size"]


def test_sinkhorn_resolves_without_extra_level_when_codes_are_free():
    # prefix (0, 0): items 0-3 collide on code 5, item 4 holds code 1 alone
    codes = np.array([[0, 0, 5]] * 4 + [[0, 0, 1], [1, 2, 3]])
    book = np.zeros((8, 2), dtype=np.float32)
    book[:, 0] = np.arange(8)  # code j sits at (j, 0)
    # item 3 is nearest to code 1, which item 4 holds: it must take the next nearest free code
    res = np.array([[5, 0], [4.2, 0], [6.9, 0], [1.1, 0], [1, 0], [3, 0]], dtype=np.float32)
    out, rep = resolve_collisions(codes, 8, "sinkhorn", res, book)
    _assert_unique(out)
    assert rep["levels_out"] == 3 and not rep["extra_level_added"]
    assert out[4, 2] == 1 and out[5].tolist() == [1, 2, 3]  # unique items keep their code
    assert out[:4, 2].tolist() == [5, 4, 7, 2]  # each mover: nearest free code
    assert rep["items_reassigned"] == 3 and rep["prefixes_touched"] == 1


def test_adversarial_identical_embeddings():
    # 300 identical items (one SID before resolution) among 1200 clustered ones
    x, _ = clustered_embeddings(n=1200, dim=16, branching=(4, 4), duplicates=300, seed=2)
    r = fit_rq_kmeans(x, levels=3, codebook_size=16, seed=0)
    assert collision_stats(r.codes)["max_group_size"] >= 300
    for method in ("sinkhorn", "extra_level"):
        codes, rep = resolve_collisions(r.codes, 16, method, r.last_residuals, r.codebooks[-1])
        _assert_unique(codes)
        assert rep["levels_out"] == 4  # 300 items cannot fit 16 last-level codes
        assert set(np.unique(codes[:, 3])) == set(range(rep["extra_level_size"]))
        tokens = set(sid_tokens(3, 16, rep["extra_level_size"]))
        assert all(t in tokens for t in format_sid(codes[0]).replace(">", "> ").split())
    # sinkhorn spreads the 300 over 16 codes first: ceil(300 / 16) = 19 extra codes at most
    sink = resolve_collisions(r.codes, 16, "sinkhorn", r.last_residuals, r.codebooks[-1])[1]
    assert sink["extra_level_size"] <= 19 and sink["prefixes_overfull"] >= 1


def test_extra_level_indexes_items_within_groups():
    codes = np.array([[1, 1], [0, 0], [1, 1], [1, 1], [2, 0]])
    out = add_extra_level(codes)
    assert out[:, 2].tolist() == [0, 0, 1, 2, 0]
    _assert_unique(out)


def test_no_collisions_no_change_unless_asked():
    codes = np.array([[0, 1], [1, 0]])
    out, rep = resolve_collisions(codes, 4, "extra_level")
    np.testing.assert_array_equal(out, codes)
    assert rep["levels_out"] == 2 and rep["collision_rate_before"] == 0.0
    out, rep = resolve_collisions(codes, 4, "sinkhorn", always_extra_level=True)
    assert out[:, 2].tolist() == [0, 0] and rep["levels_out"] == 3


def test_resolution_input_errors():
    codes = np.array([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="method"):
        resolve_collisions(codes, 4, "magic")
    with pytest.raises(ValueError, match="last_residuals"):
        resolve_collisions(codes, 4, "sinkhorn")
    with pytest.raises(ValueError, match="outside"):
        resolve_collisions(np.array([[0, 4]]), 4, "extra_level")
    with pytest.raises(ValueError, match="shapes"):
        resolve_collisions(codes, 4, "sinkhorn", np.zeros((3, 2)), np.zeros((4, 2)))


# -- report ---------------------------------------------------------------------------------
def test_report_values_on_a_hand_made_catalog():
    before = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 2], [1, 3, 1]])
    after, res = resolve_collisions(before, 4, "extra_level")
    rep = sid_report(
        after,
        3,
        4,
        codes_before=before,
        resolution=res,
        reconstruction_mse=0.5,
        history=[{"epoch": 1, "loss": np.float32(2.0)}],
    )
    json.dumps(rep)
    assert rep["collision_rate_before"] == 0.5 and rep["collision_rate_after"] == 0.0
    assert rep["max_items_per_sid_before"] == 2 and rep["max_items_per_sid"] == 1
    assert rep["all_unique"] and rep["sid_length"] == 4
    assert rep["extra_level"] == {"size": 2, "items_nonzero": 1}
    l0, l1 = rep["levels_stats"][0], rep["levels_stats"][1]
    assert l0["codes_used"] == 2 and l0["utilisation"] == 0.5
    assert l0["entropy_bits"] == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))
    assert l0["entropy_normalised"] == pytest.approx(l0["entropy_bits"] / 2)
    # level 1: parent 0 has children {0, 1}, parent 1 has {3}
    assert l1["parents"] == 2 and l1["mean_children_per_parent"] == 1.5
    assert l1["mean_utilisation_under_parent"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert rep["reconstruction_mse"] == 0.5 and rep["training_curve"][0]["loss"] == 2.0
    assert isinstance(rep["training_curve"][0]["loss"], float)


def test_sid_table_from_resolved_codes(rqk):
    codes, _ = resolve_collisions(rqk.codes, 16, "sinkhorn", rqk.last_residuals, rqk.codebooks[-1])
    table = build_sid_table(np.arange(len(codes)), codes)
    trie = SIDTrie.from_table(table)
    assert len(trie) == 2000
    for item in (0, 17, 1999):
        assert trie.item_of(table["sid"][item]) == item
