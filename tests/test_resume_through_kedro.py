"""The user's path through an interruption: ``kill -9`` of ``kedro run`` in the middle of Stage 1,
Stage 2 and an RL method, then the same command again, resumes from the last checkpoint and ends
with the weights and metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from kedro_helpers import REPO, kedro, make_project

#: Longer than the smoke defaults so that a kill lands while the stage is still training.
LONGER = ("align.train.max_steps=15,reason.train.max_steps=15,sapo.rl.steps=6,"
          "align.train.eval_every=5,reason.train.eval_every=5")
#: (kedro pipeline arguments, work directory, first checkpoint to wait for, model directory)
STAGES = [
    (["--pipelines=align"], "align_work", "checkpoint-000003", "align_model"),
    (["--pipelines=reason"], "reason_work", "checkpoint-000003", "reason_model"),
    (["--pipelines=rl", "--namespaces=sapo"], "rl_sapo_work", "checkpoint-000001", "rl_sapo"),
]


def _run_args(root: str, extra: list[str]) -> list[str]:
    return ["run", "--env", "smoke", *extra, "--params", f"run_root={root},{LONGER}"]


def _start(project: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "kedro", *args], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill_after(proc: subprocess.Popen, marker: Path, timeout: float = 600.0) -> None:
    """SIGKILL the run's process group as soon as ``marker`` exists; the run must still be
    going then (else the test would prove nothing)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"the run ended before {marker.name} appeared"
        assert time.monotonic() < deadline, f"no {marker} after {timeout} s"
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _weights(model_dir: Path) -> dict:
    return load_file(model_dir / "model.safetensors")


@pytest.mark.slow
def test_kill_9_of_each_training_stage_then_rerun_ends_as_an_uninterrupted_run(tmp_path: Path):
    project = make_project(tmp_path / "p")
    # the inputs of the training stages, once; then the same inputs under a second run root
    kedro(project, *_run_args("data/straight", ["--pipelines=ingest,sid_catalog,teacher_corpus"]))
    shutil.copytree(project / "data" / "straight", project / "data" / "killed")
    for args, work, first, model in STAGES:
        kedro(project, *_run_args("data/straight", args))
        killed = project / "data" / "killed"
        proc = _start(project, _run_args("data/killed", args))
        _kill_after(proc, killed / "06_models" / work / first)
        assert not (killed / "06_models" / model / "model.safetensors").exists()
        again = kedro(project, *_run_args("data/killed", args))
        assert "resuming from" in again.stdout + again.stderr, work
        a = _weights(project / "data" / "straight" / "06_models" / model)
        b = _weights(killed / "06_models" / model)
        assert a.keys() == b.keys()
        assert all(bool((a[k] == b[k]).all()) for k in a), f"{model}: weights differ"
    for report in ("align_eval.json", "reason_eval.json", "align_log.csv", "reason_log.csv",
                   "rl_sapo_log.csv"):
        straight = (project / "data" / "straight" / "08_reporting" / report).read_text()
        resumed = (project / "data" / "killed" / "08_reporting" / report).read_text()
        assert _without_clock(straight, report) == _without_clock(resumed, report), report


def _is_clock(name: str) -> bool:
    """Wall-clock fields (seconds, throughputs), which no two runs share."""
    return name.endswith("_s") or any(x in name for x in ("second", "per_s", "ms_per", "wall"))


def _without_clock(text: str, name: str) -> object:
    if name.endswith(".json"):
        return {k: v for k, v in json.loads(text).items() if not _is_clock(k)}
    lines = text.splitlines()
    keep = [i for i, c in enumerate(lines[0].split(",")) if not _is_clock(c)]
    return [[row.split(",")[i] for i in keep] for row in lines]
