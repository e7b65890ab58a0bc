"""``dvc repro`` rebuilds every stage from a fresh copy, and a second run does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kedro_helpers import REPO, make_project

BIN = Path(sys.executable).parent


def dvc(project: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KEDRO_ENV": "smoke",
        "DVC_NO_ANALYTICS": "1",
        "KEDRO_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def test_dvc_stages_match_the_kedro_pipelines():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    from sapo_pipeline.pipelines.sapo_full.pipeline import STAGES

    expected = [module.__name__.rsplit(".", 1)[1] for module in STAGES]
    assert list(stages) == expected
    for name, stage in stages.items():
        if "foreach" in stage:  # one DVC stage per namespace of a modular pipeline
            stage = stage["do"]
            assert stage["cmd"] == f"kedro run --pipelines={name} --namespaces=${{item}}"
        else:
            assert stage["cmd"] == f"kedro run --pipelines={name}"
        params_file = next(iter(stage["params"][0]))
        assert params_file == f"conf/base/parameters_{name}.yml"


@pytest.mark.slow
def test_dvc_repro_twice_from_scratch(tmp_path: Path):
    project = make_project(tmp_path / "p")
    shutil.rmtree(project / "src")
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(project, "init", "-q")

    first = dvc(project, "repro")
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        for each in stage.get("foreach", [None]):
            assert f"Running stage '{name if each is None else f'{name}@{each}'}'" in first
    assert (project / "dvc.lock").is_file()
    second = dvc(project, "repro")
    assert "Data and pipelines are up to date" in second and "Running stage" not in second
    metrics = dvc(project, "metrics", "show", "--json")
    assert "ingest_report.json" in metrics and "sid_report.json" in metrics
    assert "evaluation_test.json" in metrics and '"sapo"' in metrics
