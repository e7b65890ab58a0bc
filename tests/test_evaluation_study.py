"""The study: several run roots (seeds) of one data set read back and reported together, on
fabricated runs whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from study_fakes import MODELS, ROWS, fake_root, study_roots

from sapo_pipeline.evaluation.study import build_study, load_run, main, two_level_ci


def test_means_intervals_and_paired_differences_are_the_known_ones(tmp_path: Path):
    roots, truth = study_roots(tmp_path)
    report = build_study(roots, dataset="fake", n_bootstrap=300, n_permutations=500)
    rows = {r["method"]: r for r in report["methods"]}
    assert set(rows) == set(MODELS) and rows["popularity"]["baseline"]
    for m, values in truth.items():
        cell = rows[m]["metrics"]["ndcg@10"]
        assert cell["mean"] == pytest.approx(values.mean())
        assert cell["low"] - 1e-9 <= cell["mean"] <= cell["high"] + 1e-9
        assert rows[m]["n_seeds"] == 3
        spread = rows[m]["seed_spread"]["ndcg@10"]
        assert spread["mean"] == pytest.approx(values.mean(axis=1).mean())
    assert rows["popularity"]["metrics"]["ndcg@10"]["low"] == pytest.approx(0.05)  # no spread
    tests = {(t["reference"], t["other"], t["metric"]): t for t in report["paired_tests"]}
    assert tests[("sapo", "sft_reasoning", "ndcg@10")]["mean_diff"] == pytest.approx(0.1)
    assert tests[("sapo", "sft_reasoning", "ndcg@10")]["p_value"] < 0.01
    assert tests[("grpo", "sft_reasoning", "ndcg@10")]["mean_diff"] == pytest.approx(0.0)
    assert tests[("grpo", "sft_reasoning", "ndcg@10")]["p_value"] == 1.0
    assert all("p_holm" in t for t in report["paired_tests"])
    assert report["run_roots"] == [str(r) for r in roots]
    assert "two-level" in report["ci_method"]


def test_the_two_level_interval_carries_the_spread_between_seeds():
    rng = np.random.default_rng(1)
    rows = rng.uniform(0, 1, (1, 300, 1))
    alike = np.repeat(rows, 4, axis=0)  # four identical seeds
    apart = alike + np.array([0.0, 0.1, 0.2, 0.3])[:, None, None]  # seeds far apart
    (a,), (b,) = two_level_ci(alike, 400), two_level_ci(apart, 400)
    assert b.high - b.low > 2 * (a.high - a.low)
    assert a.mean == pytest.approx(rows.mean()) and b.mean == pytest.approx(rows.mean() + 0.15)
    with pytest.raises(ValueError, match="seeds, rows, metrics"):
        two_level_ci(np.zeros((3, 4)))


def test_runs_must_hold_the_same_models_on_the_same_rows(tmp_path: Path):
    roots, _ = study_roots(tmp_path, seeds=2)
    extra = fake_root(tmp_path / "other", {"sapo": np.zeros(ROWS), "grpo": np.zeros(ROWS)})
    with pytest.raises(ValueError, match="every seed needs the same models"):
        build_study([*roots, extra], dataset="fake", n_bootstrap=50)
    with pytest.raises(ValueError, match="listed twice"):
        build_study([roots[0], roots[0]], dataset="fake")
    with pytest.raises(FileNotFoundError, match="evaluation_test.json"):
        load_run(tmp_path / "missing")
    (roots[1] / "07_model_output" / "evaluate" / "grpo" / "sample_metrics_test.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="grpo is in the report"):
        load_run(roots[1])


def test_the_command_line_writes_json_markdown_and_figure(tmp_path: Path, caplog):
    roots, truth = study_roots(tmp_path, seeds=2)
    out = tmp_path / "study"
    caplog.set_level("INFO", logger="sapo_pipeline.evaluation.study")
    assert main([*map(str, roots), "--dataset", "fake", "--out", str(out),
                 "--n-bootstrap", "100"]) == 0
    report = json.loads((out / "study_test.json").read_text())
    sapo = next(r for r in report["methods"] if r["method"] == "sapo")
    assert sapo["metrics"]["ndcg@10"]["mean"] == pytest.approx(truth["sapo"][:2].mean())
    assert "sapo" in (out / "study_test.md").read_text()
    assert (out / "study_test.png").stat().st_size > 1000
    assert f"wrote {out / 'study_test.json'}" in caplog.text
