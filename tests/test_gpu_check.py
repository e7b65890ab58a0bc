"""bench/gpu/run.sh, the prepared GPU check: on a CPU machine it refuses to pretend (no CUDA,
clear message), and its CPU rehearsal runs every step from prepare.sh's inputs and summarises
what ran where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kedro_helpers import REPO


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PY": sys.executable, "GPU_DIR": str(tmp_path / "gpu"),
            "DEST": str(tmp_path / "gpu"), "OUT": str(tmp_path / "out"), **extra}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_refuses_a_machine_without_cuda(tmp_path: Path):
    (tmp_path / "gpu" / "smoke" / "04_feature").mkdir(parents=True)
    (tmp_path / "gpu" / "smoke" / "04_feature" / "item_embeddings.npy").write_bytes(b"")
    proc = subprocess.run(["bash", "bench/gpu/run.sh"], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "out" / "steps.jsonl").exists()  # nothing ran


def test_gpu_check_needs_prepared_inputs(tmp_path: Path):
    proc = subprocess.run(["bash", "bench/gpu/run.sh"], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "run bench/gpu/prepare.sh first" in proc.stderr


@pytest.mark.slow
def test_gpu_check_rehearsal_on_cpu(tmp_path: Path):
    prep = subprocess.run(["bash", "bench/gpu/prepare.sh"], cwd=REPO,
                          env=_env(tmp_path, WHEELS="0"), capture_output=True, text=True,
                          timeout=600)
    assert prep.returncode == 0, prep.stdout[-3000:] + prep.stderr[-3000:]
    smoke = tmp_path / "gpu" / "smoke"
    assert (smoke / "04_feature" / "item_embeddings.npy").is_file()
    assert not (smoke / "06_models").exists()  # only what precedes the SID catalog
    proc = subprocess.run(["bash", "bench/gpu/run.sh"], cwd=REPO,
                          env=_env(tmp_path, DEVICE="cpu", QUICK="1"), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    check = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert check["all_passed"] and [s["step"] for s in check["steps"]] == [
        "smoke", "bench_sft", "bench_decoding"]
    assert check["env"]["device"] == "cpu"
    ran = check["smoke"]["stages_ran_on"]
    assert {"align_model", "reason_model", "rl_grpo", "rl_sapo", "rl_rere"} <= set(ran)
    assert all(r["device"] == "cpu" and r["bf16"] is False for r in ran.values())
    assert "sid_catalog" in check["smoke"]["node_seconds_by_tag"]  # the graph ran on from there
    assert "embed_items" not in {n["node"] for n in json.loads(sorted(
        (smoke / "08_reporting" / "run_timings").glob("*.json"))[-1].read_text())["nodes"]}
    assert set(check["smoke"]["test_ndcg@3"]) >= {"sid_only", "sapo", "popularity", "sasrec"}
    assert check["sft"]["ratio_vs_trainer"] > 0 and "stepwise" in check["decoding"]
