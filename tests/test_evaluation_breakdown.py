"""Where a paired difference comes from: repeat-target rows against the rest, known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.evaluation.breakdown import paired_by_group, render_by_group
from sapo_pipeline.evaluation.report import Run, build_report, render_markdown


def test_group_differences_and_contributions_are_exact_and_add_up():
    # 10 rows, 2 of them repeats: a beats b by 0.5 on the repeats and loses 0.1 on the others
    flags = np.array([True, True] + [False] * 8)
    a = np.array([1.0, 1.0] + [0.0] * 8)[:, None]
    b = np.array([0.5, 0.5] + [0.1] * 8)[:, None]
    table = paired_by_group({"a": a, "b": b}, [("a", "b")], flags, metric="ndcg@10", column=0,
                            n_bootstrap=50, n_permutations=200)
    repeat, new = table["rows"]
    assert (repeat["group"], repeat["rows"], new["rows"]) == ("repeat target", 2, 8)
    assert repeat["mean_diff"] == pytest.approx(0.5) and new["mean_diff"] == pytest.approx(-0.1)
    assert repeat["contribution"] == pytest.approx(0.2 * 0.5)
    assert new["contribution"] == pytest.approx(0.8 * -0.1)
    assert repeat["contribution"] + new["contribution"] == pytest.approx(repeat["overall_diff"])
    assert repeat["overall_diff"] == pytest.approx(float((a - b).mean()))
    assert (repeat["mean_a"], repeat["mean_b"]) == (pytest.approx(1.0), pytest.approx(0.5))
    lines = "\n".join(render_by_group(table, 95))
    assert "| a - b | +0.0200 | repeat target | 2 (20.0%) |" in lines
    assert "+0.1000 |" in lines and "-0.0800 |" in lines


def test_no_repeat_rows_leaves_the_group_empty_and_renders_nothing():
    flags = np.zeros(6, dtype=bool)
    a, b = np.ones((6, 1)), np.zeros((6, 1))
    table = paired_by_group({"a": a, "b": b}, [("a", "b")], flags, metric="ndcg@10", column=0,
                            n_bootstrap=20, n_permutations=50)
    repeat, new = table["rows"]
    assert repeat["rows"] == 0 and "mean_diff" not in repeat
    assert new["contribution"] == pytest.approx(1.0)
    assert render_by_group(table, 95) == []


def test_misaligned_rows_are_an_error_naming_the_methods():
    with pytest.raises(ValueError, match="a / b have 3 / 3 rows, the group column 4"):
        paired_by_group({"a": np.ones((3, 1)), "b": np.ones((3, 1))}, [("a", "b")],
                        np.zeros(4, dtype=bool), metric="ndcg@10", column=0)


def _run(method: str, ndcg: list[float], repeat: list[bool]) -> Run:
    n = len(ndcg)
    per = pl.DataFrame({"sample_id": list(range(n)), "ndcg@10": ndcg, "recall@10": ndcg,
                        "validity": [1.0] * n, "target_in_history": repeat})
    summary = {"ks": [10], "levels": 0, "exclude_history": False, "validity": 1.0,
               "coverage": {"coverage@10": 0.1}, "convention": "history kept"}
    return Run(method=method, name=method, per_sample=per, summary=summary)


def test_the_report_splits_every_paired_test_by_repeat_target():
    repeat = [True] * 4 + [False] * 16
    sft = _run("sft_reasoning", [1.0] * 4 + [0.2] * 16, repeat)
    sapo = _run("sapo", [0.5] * 4 + [0.2] * 16, repeat)  # loses only on the repeats
    report = build_report([sft, sapo], dataset="synthetic", split="test", n_bootstrap=50,
                          n_permutations=200, extra_pairs=[("sapo", "sft_reasoning")])
    rows = report["paired_by_group"]["rows"]
    assert [(r["reference"], r["other"], r["group"]) for r in rows] == [
        ("sapo", "sft_reasoning", "repeat target"), ("sapo", "sft_reasoning", "new target")]
    assert rows[0]["contribution"] == pytest.approx(-0.1) == pytest.approx(rows[0]["overall_diff"])
    assert rows[1]["mean_diff"] == 0.0
    assert "Where the ndcg@10 differences come from" in render_markdown(report)
