"""Metrics of sapo_pipeline.evaluation.metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.evaluation.metrics import compute_metrics, metric_names
from sapo_pipeline.evaluation.predictions import (
    PREDICTIONS_SCHEMA,
    predictions_from_hits,
    select_rows,
)

# items 1..6, three levels
CATALOG = pl.DataFrame({
    "item_id": [1, 2, 3, 4, 5, 6],
    "codes": [[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 2]],
})
SID = {i: tuple(c) for i, c in zip(CATALOG["item_id"], CATALOG["codes"])}


def preds_of(rows: dict[int, list]) -> pl.DataFrame:
    """{sample_id: [item_id or codes tuple, ...]} (best first) -> predictions table."""
    out = {c: [] for c in PREDICTIONS_SCHEMA}
    for sid, beams in rows.items():
        for rank, b in enumerate(beams):
            codes = list(b) if isinstance(b, tuple) else list(SID[b])
            item = next((i for i, c in SID.items() if list(c) == codes), None)
            out["sample_id"].append(sid)
            out["rank"].append(rank)
            out["codes"].append(codes)
            out["item_id"].append(item)
            out["score"].append(-float(rank))
    return pl.DataFrame(out, schema=PREDICTIONS_SCHEMA)


def samples_of(rows: dict[int, tuple[list[int], int]]) -> pl.DataFrame:
    return pl.DataFrame({"sample_id": list(rows), "history": [h for h, _ in rows.values()],
                         "target": [t for _, t in rows.values()]},
                        schema={"sample_id": pl.Int64, "history": pl.List(pl.Int64),
                                "target": pl.Int64})


def by_id(result) -> dict[int, dict]:
    return {r["sample_id"]: r for r in result.per_sample.iter_rows(named=True)}


def test_recall_and_ndcg_by_hand_for_rank_0_rank_2_and_absent():
    samples = samples_of({10: ([4], 1), 11: ([4], 3), 12: ([4], 6)})
    preds = preds_of({10: [1, 2, 3], 11: [1, 2, 3], 12: [1, 2, 3]})
    res = compute_metrics(preds, samples, CATALOG, ks=(1, 3))
    rows = by_id(res)
    assert (rows[10]["recall@1"], rows[10]["recall@3"], rows[10]["ndcg@3"]) == (1.0, 1.0, 1.0)
    assert (rows[11]["recall@1"], rows[11]["recall@3"]) == (0.0, 1.0)
    assert rows[11]["ndcg@3"] == pytest.approx(1 / math.log2(4)) == pytest.approx(0.5)
    assert rows[11]["ndcg@1"] == 0.0 and rows[11]["hit_rank"] == 2
    assert (rows[12]["recall@3"], rows[12]["ndcg@3"], rows[12]["hit_rank"]) == (0.0, 0.0, None)
    m = res.summary["metrics"]
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert res.summary["exclude_history"] is False
    assert "NOT excluded" in res.summary["convention"]
    assert res.summary["counts"]["samples_without_hit"] == 1


def test_ndcg_at_rank_1_and_cutoff_beyond_beams():
    res = compute_metrics(preds_of({1: [2, 1]}), samples_of({1: ([], 1)}), CATALOG, ks=(1, 5))
    row = by_id(res)[1]
    assert row["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert row["recall@1"] == 0.0 and row["recall@5"] == 1.0
    assert res.summary["counts"]["samples_with_fewer_ranked_beams_than_k"] == {"@1": 0, "@5": 1}


def test_history_excluded_variant_drops_history_items_and_reranks():
    # sample 1: history item 2 predicted first, target 1 second -> R@1 0 (kept) / 1 (excluded)
    # sample 2: target 3 is in the history -> hit when kept, impossible when excluded
    samples = samples_of({1: ([2], 1), 2: ([3, 5], 3)})
    preds = preds_of({1: [2, 1, 4], 2: [3, 4, 6]})
    kept = by_id(compute_metrics(preds, samples, CATALOG, ks=(1, 3)))
    excl_res = compute_metrics(preds, samples, CATALOG, ks=(1, 3), exclude_history=True)
    excl = by_id(excl_res)
    assert kept[1]["recall@1"] == 0.0 and kept[1]["ndcg@3"] == pytest.approx(1 / math.log2(3))
    assert excl[1]["recall@1"] == 1.0 and excl[1]["ndcg@3"] == 1.0 and excl[1]["n_ranked"] == 2
    assert kept[2]["recall@1"] == 1.0
    assert excl[2]["recall@3"] == 0.0 and excl[2]["n_ranked"] == 2
    s = excl_res.summary
    assert s["exclude_history"] is True and "EXCLUDED" in s["convention"]
    assert s["counts"]["excluded_history_beams"] == 2 and s["counts"]["targets_in_history"] == 1
    # top-1 after exclusion is what the level accuracy sees: sample 2's top-1 becomes item 4
    assert excl[2]["level_acc_1"] == 0.0 and kept[2]["prefix_acc_3"] == 1.0


def test_invalid_beams_count_in_validity_occupy_their_rank_and_never_hit():
    samples = samples_of({1: ([], 1), 2: ([], 4)})
    preds = preds_of({1: [(9, 9, 9), 1, (0, 0, 7)], 2: [4, 5, 6]})
    res = compute_metrics(preds, samples, CATALOG, ks=(1, 3))
    rows = by_id(res)
    assert rows[1]["validity"] == pytest.approx(1 / 3) and rows[2]["validity"] == 1.0
    assert rows[1]["recall@1"] == 0.0 and rows[1]["hit_rank"] == 1
    assert res.summary["validity"] == pytest.approx(4 / 6)
    assert res.summary["counts"]["invalid_beams"] == 2
    # an invalid SID of another length is invalid too, not an error
    odd = preds_of({1: [(0, 0), 1], 2: [4]})
    assert compute_metrics(odd, samples, CATALOG, ks=(1,)).summary["counts"]["invalid_beams"] == 1


def test_collisions_count_as_hits_only_for_items_sharing_the_sid():
    collided = pl.DataFrame({"item_id": [1, 2, 3], "codes": [[0, 0], [0, 0], [0, 1]]})
    samples = samples_of({1: ([], 2), 2: ([], 3)})
    preds = pl.DataFrame({"sample_id": [1, 1, 2, 2], "rank": [0, 1, 0, 1],
                          "codes": [[0, 0], [0, 1], [0, 0], [0, 1]], "item_id": [1, 3, 1, 3],
                          "score": [0.0, -1.0, 0.0, -1.0]}, schema=PREDICTIONS_SCHEMA)
    res = compute_metrics(preds, samples, collided, ks=(1, 2))
    rows = by_id(res)
    assert rows[1]["recall@1"] == 1.0  # item 1 shares target 2's SID
    assert rows[2]["recall@1"] == 0.0 and rows[2]["recall@2"] == 1.0  # item 1 is not item 3
    assert res.summary["catalog_collisions"] is True
    assert (res.summary["catalog_items"], res.summary["catalog_sids"]) == (3, 2)
    assert res.summary["coverage"]["coverage@1"] == pytest.approx(1 / 2)


def test_level_and_prefix_accuracy_of_the_top1_prediction():
    samples = samples_of({1: ([], 6), 2: ([], 6)})  # target (1, 1, 2)
    preds = preds_of({1: [5, 6], 2: [(0, 1, 2), 6]})  # top-1 (1,1,1) and invalid (0,1,2)
    rows = by_id(compute_metrics(preds, samples, CATALOG, ks=(1,)))
    assert [rows[1][f"level_acc_{k}"] for k in (1, 2, 3)] == [1.0, 1.0, 0.0]
    assert [rows[1][f"prefix_acc_{k}"] for k in (1, 2, 3)] == [1.0, 1.0, 0.0]
    assert [rows[2][f"level_acc_{k}"] for k in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert [rows[2][f"prefix_acc_{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_coverage_counts_distinct_catalog_items_in_top_k():
    samples = samples_of({1: ([], 1), 2: ([], 2), 3: ([], 3)})
    preds = preds_of({1: [1, 2], 2: [1, 3], 3: [(7, 7, 7), 4]})
    cov = compute_metrics(preds, samples, CATALOG, ks=(1, 2)).summary["coverage"]
    assert cov == {"coverage@1": pytest.approx(1 / 6), "coverage@2": pytest.approx(4 / 6)}


def _reference(preds, samples, ks, exclude):
    """Plain-Python metrics for the cross-check."""
    sid_of = {i: tuple(c) for i, c in zip(CATALOG["item_id"], CATALOG["codes"])}
    beams: dict[int, list] = {}
    for r in preds.sort("sample_id", "rank").iter_rows(named=True):
        beams.setdefault(r["sample_id"], []).append(tuple(r["codes"]))
    out = {}
    for r in samples.iter_rows(named=True):
        hist = {sid_of[i] for i in r["history"]}
        ranked = [b for b in beams[r["sample_id"]] if not (exclude and b in hist)]
        hit = next((i for i, b in enumerate(ranked) if b == sid_of[r["target"]]), None)
        out[r["sample_id"]] = {**{f"recall@{k}": float(hit is not None and hit < k) for k in ks},
                               **{f"ndcg@{k}": (1 / math.log2(hit + 2) if hit is not None and hit < k
                                                else 0.0) for k in ks}}
    return out


@pytest.mark.parametrize("exclude", [False, True])
def test_vectorised_metrics_match_a_plain_loop_on_random_rankings(exclude):
    rng = np.random.default_rng(0)
    items = CATALOG["item_id"].to_list()
    rows, beams = {}, {}
    for s in range(300):
        rows[s] = (rng.choice(items, size=int(rng.integers(0, 4))).tolist(), int(rng.choice(items)))
        perm = rng.permutation(items)[: int(rng.integers(1, 7))].tolist()
        if rng.random() < 0.2:
            perm.insert(int(rng.integers(0, len(perm) + 1)), (5, 5, 5))
        beams[s] = perm
    samples, preds = samples_of(rows), preds_of(beams)
    ks = (1, 3, 5)
    res = by_id(compute_metrics(preds, samples, CATALOG, ks=ks, exclude_history=exclude))
    ref = _reference(preds, samples, ks, exclude)
    for s in rows:
        for name, value in ref[s].items():
            assert res[s][name] == pytest.approx(value), (s, name)


def test_bad_predictions_raise_clear_errors():
    samples = samples_of({1: ([], 1), 2: ([], 2)})
    with pytest.raises(ValueError, match="no prediction.*sample_id=2"):
        compute_metrics(preds_of({1: [1]}), samples, CATALOG)
    with pytest.raises(ValueError, match="not among the evaluated samples"):
        compute_metrics(preds_of({1: [1], 2: [2], 3: [3]}), samples, CATALOG)
    wrong = preds_of({1: [1], 2: [2]}).with_columns(pl.lit(5, dtype=pl.Int64).alias("item_id"))
    with pytest.raises(ValueError, match="item_id disagrees"):
        compute_metrics(wrong, samples, CATALOG)
    dup = pl.concat([preds_of({1: [1], 2: [2]}), preds_of({1: [3]})])
    with pytest.raises(ValueError, match=r"duplicated \(sample_id, rank\)"):
        compute_metrics(dup, samples, CATALOG)
    with pytest.raises(ValueError, match="targets have no SID.*target=99"):
        compute_metrics(preds_of({1: [1]}), samples_of({1: ([], 99)}), CATALOG)
    with pytest.raises(ValueError, match="missing columns"):
        compute_metrics(preds_of({1: [1]}).drop("score"), samples_of({1: ([], 1)}), CATALOG)


def test_predictions_from_hits_ranks_by_score_and_nulls_non_items():
    class Hit:
        def __init__(self, codes, score):
            self.codes, self.score = codes, score

    def item_of(codes):
        return {v: k for k, v in SID.items()}[tuple(codes)]

    table = predictions_from_hits([7], [[Hit((0, 0, 1), -2.0), Hit((0, 0, 0), -1.0),
                                         Hit((9, 9, 9), -3.0)]], item_of)
    assert table["rank"].to_list() == [0, 1, 2]
    assert table["item_id"].to_list() == [1, 2, None]
    assert table.schema == pl.Schema(PREDICTIONS_SCHEMA)


def test_select_rows_is_a_seeded_subset_of_one_split():
    samples = pl.DataFrame({"sample_id": list(range(100)), "history": [[1]] * 100,
                            "target": [2] * 100, "split": ["test"] * 60 + ["valid"] * 40})
    a = select_rows(samples, "test", 10, seed=3)
    assert a.height == 10 and set(a["split"]) == {"test"}
    assert a["sample_id"].to_list() == select_rows(samples, "test", 10, seed=3)["sample_id"].to_list()
    assert a["sample_id"].to_list() != select_rows(samples, "test", 10, seed=4)["sample_id"].to_list()
    assert select_rows(samples, "valid").height == 40
    with pytest.raises(ValueError, match="no rows in split 'train'"):
        select_rows(samples, "train")


def test_metric_names_order():
    assert metric_names((1, 5), 2) == ["recall@1", "recall@5", "ndcg@1", "ndcg@5", "validity",
                                       "level_acc_1", "level_acc_2", "prefix_acc_1", "prefix_acc_2"]


def test_ndcg_of_ranks_is_the_ndcg_column_gain():
    from sapo_pipeline.evaluation.metrics import ndcg_of_ranks

    got = ndcg_of_ranks(np.array([0, 1, -1, 10, 9]), 10)
    np.testing.assert_allclose(got, [1.0, 1 / np.log2(3), 0.0, 0.0, 1 / np.log2(11)])
