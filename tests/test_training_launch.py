"""The launcher settings and the command lines they make (accelerate, torchrun); the entry
point's inputs round trip (the Kedro path: test_launch_through_kedro)."""

from __future__ import annotations

import sys

import polars as pl
import pytest

from sapo_pipeline.training.launch import LauncherConfig, launch_command, rank_errors


def test_one_process_trains_in_the_node():
    assert LauncherConfig().in_process and not LauncherConfig(num_processes=2).in_process


def test_accelerate_command_line(tmp_path):
    cfg = LauncherConfig(num_processes=8, num_machines=2, machine_rank=1,
                         main_process_ip="10.0.0.1", main_process_port=29500,
                         config_file="zero2.yaml", extra_args=["--mixed_precision", "bf16"])
    cmd = launch_command(cfg, tmp_path / "run.json")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    flat = " ".join(cmd[3:])
    assert ("--config_file zero2.yaml --num_processes 8 --num_machines 2 --machine_rank 1 "
            "--main_process_ip 10.0.0.1 --main_process_port 29500 --mixed_precision bf16 "
            f"-m sapo_pipeline.stages --config {tmp_path / 'run.json'}") == flat


def test_accelerate_without_a_config_file_asks_for_a_distributed_launch(tmp_path):
    # without it accelerate starts ONE process on a machine without GPUs
    cmd = launch_command(LauncherConfig(num_processes=2), tmp_path / "run.json")
    assert "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"


def test_torchrun_command_line_counts_processes_per_machine(tmp_path):
    cfg = LauncherConfig(kind="torchrun", num_processes=8, num_machines=2,
                         main_process_ip="10.0.0.1")
    cmd = launch_command(cfg, tmp_path / "run.json")
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:11] == ["--nproc_per_node", "4", "--nnodes", "2", "--node_rank", "0",
                         "--master_addr", "10.0.0.1"]


@pytest.mark.parametrize("bad, match", [
    ({"kind": "mpirun"}, "kind"),
    ({"num_processes": 0}, "num_processes"),
    ({"num_processes": 3, "num_machines": 2, "main_process_ip": "x"}, "divisible"),
    ({"num_processes": 4, "num_machines": 2}, "main_process_ip"),
    ({"machine_rank": 1}, "machine_rank"),
    ({"kind": "torchrun", "config_file": "c.yaml"}, "config_file"),
])
def test_impossible_settings_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        LauncherConfig(**bad)


def test_staged_inputs_read_back_as_written(tmp_path):
    from sapo_pipeline.stages import read_inputs, write_run

    frame = pl.DataFrame({"a": [1, 2]})
    with pytest.raises(ValueError, match="missing"):
        write_run(tmp_path, "align", {}, {"alignment_corpus": frame})
    with pytest.raises(ValueError, match="unknown stage"):
        write_run(tmp_path, "ingest", {}, {})
    import json

    run = write_run(tmp_path, "align", {"train": {"lr": 1e-3}},
                    {"alignment_corpus": frame, "align_tokenizer": _Tok(), "sid_table": frame})
    spec = json.loads(run.read_text())
    assert spec["stage"] == "align" and spec["section"] == {"train": {"lr": 1e-3}}
    assert spec["inputs"]["sid_table"]["kind"] == "parquet"
    spec["inputs"].pop("align_tokenizer")
    assert read_inputs(spec)["sid_table"].equals(frame)


class _Tok:
    """A stand-in tokenizer: the staging only calls save_pretrained."""

    def save_pretrained(self, path) -> None:
        from pathlib import Path

        (Path(path) / "tokenizer.json").write_text("{}")


def test_a_worker_started_with_another_world_size_refuses_to_train(tmp_path, monkeypatch):
    import json

    from sapo_pipeline.stages import run

    spec = tmp_path / "run.json"
    spec.write_text(json.dumps({"stage": "align", "section": {}, "inputs": {},
                                "output": str(tmp_path / "out"), "num_processes": 2}))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="started as 1 process"):
        run(spec)


def test_a_job_past_its_timeout_is_stopped_with_its_workers(tmp_path):
    import os
    import subprocess
    import time

    from sapo_pipeline.training.launch import LaunchError, launch

    (tmp_path / "sleeper.py").write_text(
        "import os, sys, time\n"
        "open(os.path.join(sys.argv[-1].rsplit('/', 1)[0], f\"pid{os.environ['RANK']}\"), 'w')"
        ".write(str(os.getpid()))\n"
        "time.sleep(120)\n")
    run = tmp_path / "run.json"
    run.write_text("{}")
    cfg = LauncherConfig(kind="torchrun", num_processes=2, timeout_s=8)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    with pytest.raises(LaunchError, match="timeout_s=8"):
        launch(cfg, run, env=env, module="sleeper")
    assert time.monotonic() - started < 60
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in (0, 1)]
    time.sleep(0.5)
    alive = subprocess.run(["ps", "-o", "pid=", "-p", ",".join(map(str, pids))],
                           capture_output=True, text=True).stdout.split()
    assert alive == [], f"workers left running: {alive}"


def test_the_first_rank_to_fail_is_named(tmp_path):
    import os
    import time

    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "rank1.txt").write_text("Traceback\nMemoryError: the cause")
    time.sleep(0.01)
    (tmp_path / "errors" / "rank0.txt").write_text("Traceback\nRuntimeError: peer closed")
    os.utime(tmp_path / "errors" / "rank0.txt", None)
    assert [r for r, _ in rank_errors(tmp_path)] == [1, 0]
