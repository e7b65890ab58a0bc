"""The benchmarks run (tiny settings) and write their JSON: figures, ratios and goals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kedro_helpers import REPO


def _run(script: str, out: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_rl_bench_reports_sapo_against_grpo(tmp_path: Path):
    res = _run("rl/run.py", tmp_path / "rl.json", "--methods", "grpo", "sapo", "--repeats", "1",
               "--steps", "2", "--preset", "tiny", "--prompts", "8", "--items", "300")
    assert res["setup"]["timed_steps_per_method"] == {"grpo": 1, "sapo": 1}
    assert res["costs"]["grpo"]["token_ratio"] == 1.0
    sapo, costs = res["sapo_vs_grpo"], res["costs"]
    # the ratios are the medians of this run's own measurements, and the goal is judged on them
    assert sapo["token_ratio"] == pytest.approx(
        costs["sapo"]["median_ms_per_token"] / costs["grpo"]["median_ms_per_token"], rel=1e-3)
    assert sapo["step_ratio"] == pytest.approx(
        costs["sapo"]["median_step_s"] / costs["grpo"]["median_step_s"], rel=1e-3)
    assert res["goal_met"] is (sapo["token_ratio"] <= res["goal"]["sapo_token_ratio_max"])


@pytest.mark.slow
def test_decoding_bench_quick_mode_agrees_with_generate(tmp_path: Path):
    res = _run("decoding/run.py", tmp_path / "decoding.json", "--prompts", "4", "--repeats", "1",
               "--items", "300", "--skip-reasoning", "--preset", "tiny")
    for row in ("beam", "sample"):  # ratio = their median ms per prompt / ours, in this run
        r = res[row]
        assert r["ratio"] == pytest.approx(r["theirs_ms_per_prompt"] / r["ours_ms_per_prompt"],
                                           abs=0.01 + 0.01 * r["ratio"])
        assert len(r["ours_runs_s"]) == len(r["theirs_runs_s"]) == 1
    assert res["beam"]["top_b_sets_agree"] == "4/4"
    assert res["goals_met"]["beam"] is (res["beam"]["ratio"] >= 5.0)


@pytest.mark.slow
def test_decoding_bench_stepwise_row_agrees_with_today_and_generate(tmp_path: Path):
    res = _run("decoding/run.py", tmp_path / "decoding.json", "--prompts", "4", "--repeats", "1",
               "--items", "300", "--preset", "tiny", "--think-cap", "4", "--group", "4",
               "--stepwise-batch", "4", "--today-batch", "2")
    sw = res["stepwise_beam"]
    assert sw["top_b_sets_agree_today"] == "4/4"
    assert sw["top_b_sets_agree_generate"] == "4/4"
    floor = sw["floor"]
    assert floor["decoded_tokens_per_prompt"] > 0 and floor["matmul_gflops"] > 0
    assert floor["ours_over_floor"] == pytest.approx(sw["ours_ms_per_prompt"]
                                                     / floor["ms_per_prompt"], rel=0.02)
    assert set(res["goals_met"]) >= {"stepwise_vs_today", "stepwise_floor"}
