"""The user's path through an interruption: ``kill -9`` of ``kedro run`` in the middle of Stage 1,
Stage 2 and an RL method, then the same command again, resumes from the last checkpoint and ends
with the weights and metrics of an uninterrupted run; a killed evaluation leaves no half-written
output and, run again, ends with the metrics of an uninterrupted one."""

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
    _kill_9_of_evaluate(project)


def _complete(path: Path) -> bool:
    """Whether a dataset file that exists under its final name reads back whole."""
    import polars as pl

    try:
        if path.suffix == ".parquet":
            pl.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except Exception:  # noqa: BLE001 - any failure to read back means a half-written file
        return False
    return True


def _kill_9_of_evaluate(project: Path) -> None:
    """``kill -9`` of the evaluation of the Stage-1, Stage-2 and SAPO models as soon as its
    first output appears: every output file that exists then reads back whole (atomic writes:
    nothing half-written carries a final name), and the same command again ends with the per-row
    metrics of an uninterrupted evaluation."""
    import polars as pl

    args = ["--pipelines=evaluate", "--namespaces=sid_only,sft_reasoning,sapo"]
    kedro(project, *_run_args("data/straight", args))
    killed = project / "data" / "killed"
    out = killed / "07_model_output" / "evaluate"
    proc = _start(project, _run_args("data/killed", args))
    deadline = time.monotonic() + 600
    # a dataset under its final name (writes go to hidden temporary names first)
    while not any(p.is_file() and not p.name.startswith(".") for p in out.rglob("*")):
        assert proc.poll() is None and time.monotonic() < deadline, "evaluate wrote nothing"
        time.sleep(0.01)
    assert proc.poll() is None, "the evaluation finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    files = [p for d in (out, killed / "08_reporting" / "evaluate") for p in d.rglob("*")
             if p.is_file()]
    finished = [p for p in files if p.suffix in (".parquet", ".json")]
    assert finished and all(_complete(p) for p in finished), finished
    metrics = {p.relative_to(killed) for p in finished if p.name.startswith("sample_metrics")}
    assert len(metrics) < 6, "every model was scored before the kill: nothing was interrupted"
    kedro(project, *_run_args("data/killed", args))
    for model in ("sid_only", "sft_reasoning", "sapo"):
        for split in ("valid", "test"):
            name = Path("07_model_output/evaluate") / model / f"sample_metrics_{split}.parquet"
            a = pl.read_parquet(project / "data" / "straight" / name)
            b = pl.read_parquet(killed / name)
            assert a.equals(b), name


def _is_clock(name: str) -> bool:
    """Wall-clock fields (seconds, throughputs), which no two runs share."""
    return name.endswith("_s") or any(x in name for x in ("second", "per_s", "ms_per", "wall"))


def _without_clock(text: str, name: str) -> object:
    if name.endswith(".json"):
        return {k: v for k, v in json.loads(text).items() if not _is_clock(k)}
    lines = text.splitlines()
    keep = [i for i, c in enumerate(lines[0].split(",")) if not _is_clock(c)]
    return [[row.split(",")[i] for i in keep] for row in lines]
