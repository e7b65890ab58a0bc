"""`kedro run` answers a configuration or input error with one message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from sapo_pipeline.cli import explain
from sapo_pipeline.config_utils import ConfigError, InputError

from kedro_helpers import kedro, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("cli"))


def _tail(proc) -> str:
    return (proc.stdout + proc.stderr).strip()


def test_a_wrong_parameter_is_one_message_and_exit_status_2(project: Path):
    proc = kedro(project, "run", "--pipelines=align", "--params", "align.train.lr=-1", check=False)
    out = _tail(proc)
    assert proc.returncode == 2
    assert "Error: configuration error: align.train: TrainConfig.lr=-1: must be > 0" in out
    assert "Traceback" not in out and len(out.splitlines()) < 25
    verbose = kedro(project, "run", "--pipelines=align", "--params", "align.train.lr=-1",
                    "--verbose", check=False)
    assert verbose.returncode != 0 and "Traceback" in _tail(verbose)


def test_a_missing_raw_folder_names_it_without_a_traceback(project: Path, tmp_path: Path):
    missing = tmp_path / "nowhere"
    proc = kedro(project, "run", "--pipelines=ingest", "--params",
                 f"ingest.source.format=amazon2023,ingest.source.path={missing},"
                 "ingest.source.category=Office_Products", check=False)
    out = _tail(proc)
    assert proc.returncode == 2
    assert f"Error: input error: raw data directory {missing} does not exist" in out
    assert "Traceback" not in out
    # log lines are not wrapped at 80 columns when the output is not a terminal
    assert any(len(line) > 100 for line in out.splitlines())


def test_a_seed_that_is_no_integer_is_one_message(project: Path):
    proc = kedro(project, "run", "--pipelines=align", "--params", "seed=abc", check=False)
    out = _tail(proc)
    assert proc.returncode == 2, out[-3000:]
    assert "Error: configuration error:" in out and "expected integers (the run's seed)" in out
    assert "Traceback" not in out


def test_explain_names_the_kind_of_error():
    assert explain(ConfigError("x.y=1: must be > 1")).startswith("configuration error: x.y=1")
    assert explain(InputError("f.csv line 3: bad")).startswith("input error: f.csv line 3")
    assert explain(FileNotFoundError("raw.json")).startswith("input error: raw.json")
