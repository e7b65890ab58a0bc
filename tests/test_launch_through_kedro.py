"""Stage 1 and RL through ``kedro run`` on two processes (``align.launcher``,
``sapo.rl.launcher``; accelerate and torchrun, gloo on CPU):
the same model as one process on the same global batch, one copy of each output in the catalog,
a failing rank's own error in the node's failure, and killed launched runs (Stage 1, RL) that
resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sapo_pipeline.rl.diagnostics import csv_to_log

from kedro_helpers import REPO, kedro, make_project

TWO = "align.launcher.kind=torchrun,align.launcher.num_processes=2"
TWO_ACCELERATE = "align.launcher.kind=accelerate,align.launcher.num_processes=2"


def _args(root: str, params: str = "", nodes: tuple[str, ...] = ()) -> list[str]:
    extra = ["--nodes", ",".join(nodes)] if nodes else ["--pipelines=align"]
    return ["run", "--env", "smoke", *extra, "--params",
            f"run_root={root}" + (f",{params}" if params else "")]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _env() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def _kill_after(proc: subprocess.Popen, marker: Path) -> None:
    """kill -9 the run (the node and its launched workers) as soon as ``marker`` exists."""
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, f"no {marker.name} appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("launch") / "p")
    kedro(project, "run", "--env", "smoke", "--pipelines=ingest,sid_catalog,teacher_corpus",
          "--params", "run_root=data/one")
    return project


def _copy_inputs(project: Path, root: str) -> None:
    import shutil

    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input"):
        shutil.copytree(project / "data" / "one" / layer, project / "data" / root / layer,
                        dirs_exist_ok=True)
    models = project / "data" / root / "06_models"  # the SID quantiser Stage 1 reads
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(project / "data" / "one" / "06_models" / "sid_quantizer.safetensors", models)


@pytest.mark.slow
def test_two_processes_train_the_model_one_process_trains_on_the_same_global_batch(project):
    # one process with two micro-batches per step = two processes with one each
    kedro(project, *_args("data/one", "align.train.grad_accum=2"))
    _copy_inputs(project, "two")
    run = kedro(project, *_args("data/two", TWO_ACCELERATE))
    assert "launching 2 processes" in run.stdout + run.stderr
    one = project / "data" / "one" / "06_models" / "align_model"
    two = project / "data" / "two" / "06_models" / "align_model"
    assert _max_diff(load_file(one / "model.safetensors"), load_file(two / "model.safetensors")) \
        < 1e-6
    # the catalog holds one model; the launch folder keeps only its run.json
    launch = project / "data" / "two" / "06_models" / "align_work_launch"
    assert sorted(p.name for p in launch.iterdir()) == ["run.json"]
    assert len(list((project / "data" / "two" / "06_models").glob("align_model*"))) == 1
    log_one = (project / "data" / "one" / "08_reporting" / "align_log.csv").read_text()
    log_two = (project / "data" / "two" / "08_reporting" / "align_log.csv").read_text()
    assert log_one.splitlines()[0] == log_two.splitlines()[0]
    assert len(log_one.splitlines()) == len(log_two.splitlines())


@pytest.mark.slow
def test_a_failing_rank_fails_the_node_with_its_own_error(project):
    _copy_inputs(project, "bad")
    kedro(project, *_args("data/bad", nodes=("train_align_tokenizer",)))
    bad = kedro(project, *_args("data/bad", f"{TWO},align.backbone.kind=pretrained,"
                                "align.backbone.path=/nonexistent/backbone",
                                nodes=("train_align_model",)), check=False)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    # both ranks fail; the first to write its error is named, the other listed after it
    assert re.search(r"rank [01] failed", out) and "/nonexistent/backbone" in out
    errors = project / "data" / "bad" / "06_models" / "align_work_launch" / "errors"
    assert {p.name for p in errors.iterdir()} == {"rank0.txt", "rank1.txt"}


@pytest.mark.slow
def test_a_killed_launched_run_resumes(project):
    _copy_inputs(project, "killed")
    params = f"{TWO},align.train.max_steps=12"
    proc = subprocess.Popen([sys.executable, "-m", "kedro", *_args("data/killed", params)],
                            cwd=project, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    _kill_after(proc, project / "data" / "killed" / "06_models" / "align_work"
                / "checkpoint-000003")
    assert not (project / "data" / "killed" / "06_models" / "align_model").exists()
    again = kedro(project, *_args("data/killed", params))
    assert "resuming from" in again.stdout + again.stderr
    _copy_inputs(project, "straight12")
    kedro(project, *_args("data/straight12", params))
    a = load_file(project / "data" / "straight12" / "06_models" / "align_model"
                  / "model.safetensors")
    b = load_file(project / "data" / "killed" / "06_models" / "align_model" / "model.safetensors")
    assert _max_diff(a, b) == 0.0


@pytest.mark.slow
def test_rl_on_two_processes_trains_the_model_one_process_trains(project):
    import shutil

    _copy_inputs(project, "rl1")
    kedro(project, "run", "--env", "smoke", "--pipelines=align,reason", "--params",
          "run_root=data/rl1")
    shutil.copytree(project / "data" / "rl1", project / "data" / "rl2")
    node = ("--nodes", "sapo.train_rl_model")
    # groups large enough for non-zero advantages on the tiny model (smoke's 2 x 4 has none);
    # every rollout is counter-seeded per prompt, so rank 1 samples what one process does
    rl = "sapo.rl.group_size=16,sapo.rl.prompts_per_step=4,sapo.rl.steps=3,sapo.rl.lr=1e-4"
    kedro(project, "run", "--env", "smoke", *node, "--params", f"run_root=data/rl1,{rl}")
    run = kedro(project, "run", "--env", "smoke", *node, "--params",
                f"run_root=data/rl2,{rl},sapo.rl.launcher.kind=torchrun,"
                "sapo.rl.launcher.num_processes=2")
    assert "launching 2 processes" in run.stdout + run.stderr
    models = [project / "data" / r / "06_models" for r in ("rl1", "rl2")]
    one, two = (load_file(m / "rl_sapo" / "model.safetensors") for m in models)
    reason = load_file(models[0] / "reason_model" / "model.safetensors")
    assert _max_diff(one, reason) > 1e-6  # RL changed the model
    assert _max_diff(one, two) < 1e-6
    assert sorted(p.name for p in (models[1] / "rl_sapo_work_launch").iterdir()) == ["run.json"]
    logs = [(project / "data" / r / "08_reporting" / "rl_sapo_log.csv").read_text()
            for r in ("rl1", "rl2")]
    assert logs[0].splitlines()[0] == logs[1].splitlines()[0]
    assert len(logs[0].splitlines()) == len(logs[1].splitlines()) == 4  # header + 3 steps
    rows = [csv_to_log(text) for text in logs]
    assert [r["reward_step1"] for r in rows[0]] == [r["reward_step1"] for r in rows[1]]
    assert any(r["reward_step1"] > 0 for r in rows[0])  # there was something to learn from

    # a launched RL run killed after its first checkpoint, run again, resumes and ends where
    # the uninterrupted launched run (rl2) ended
    shutil.copytree(project / "data" / "rl1", project / "data" / "rlkill", ignore=lambda d, names: [
        n for n in names if n.startswith(("rl_sapo", "run_timings"))])
    params = (f"run_root=data/rlkill,{rl},sapo.rl.checkpoint_every=1,"
              "sapo.rl.launcher.kind=torchrun,sapo.rl.launcher.num_processes=2")
    proc = subprocess.Popen([sys.executable, "-m", "kedro", "run", "--env", "smoke", *node,
                             "--params", params], cwd=project, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    work = project / "data" / "rlkill" / "06_models" / "rl_sapo_work"
    _kill_after(proc, work / "checkpoint-000001")
    assert not (project / "data" / "rlkill" / "06_models" / "rl_sapo").exists()
    assert not (work / "checkpoint-000003").exists()  # killed before the end
    again = kedro(project, "run", "--env", "smoke", *node, "--params", params)
    assert "resuming from" in again.stdout + again.stderr
    resumed = load_file(project / "data" / "rlkill" / "06_models" / "rl_sapo" / "model.safetensors")
    assert _max_diff(resumed, two) < 1e-6
