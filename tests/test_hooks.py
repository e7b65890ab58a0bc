"""Project hooks: the node-timing summary."""

from importlib import metadata
from types import SimpleNamespace

import pytest

from sapo_pipeline.hooks import NodeTimingHooks, summarise_timings


def test_summarise_timings_sums_per_tag():
    nodes = [{"node": "a", "tags": ["align"], "seconds": 2.0},
             {"node": "sapo.train", "tags": ["rl", "rl_sapo"], "seconds": 3.0},
             {"node": "grpo.train", "tags": ["rl", "rl_grpo"], "seconds": 1.5},
             {"node": "x", "tags": [], "seconds": 0.5}]
    s = summarise_timings(nodes, 7.25)
    assert s["by_tag"] == {"align": 2.0, "rl": 4.5, "rl_sapo": 3.0, "rl_grpo": 1.5, "untagged": 0.5}
    assert s["total_seconds"] == 7.25 and s["nodes"] == nodes


def test_hook_writes_one_json_per_run(tmp_path):
    import json

    hooks = NodeTimingHooks(directory="timings")
    hooks.before_pipeline_run({"project_path": tmp_path, "pipeline_names": ["align"], "env": None})
    node = SimpleNamespace(name="train_align_model", tags={"align"})
    hooks.before_node_run(node)
    hooks.after_node_run(node)
    hooks.after_pipeline_run()
    files = list((tmp_path / "timings").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["run"]["pipeline_names"] == ["align"]
    assert [n["node"] for n in data["nodes"]] == ["train_align_model"]
    assert data["by_tag"]["align"] == pytest.approx(data["nodes"][0]["seconds"])
    assert data["run"]["code"] is None  # tmp_path is not a git work tree
    env = data["run"]["environment"]  # what else decides the figures: interpreter and packages
    assert env["packages"]["torch"] == metadata.version("torch")
    assert env["python"] and env["cpus"] >= 1 and "transformers" in env["packages"]


def test_code_version_names_the_commit_and_a_dirty_tree(tmp_path):
    import subprocess

    from sapo_pipeline.provenance import code_version

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.py").write_text("a")
    (tmp_path / "README.md").write_text("a")
    git("add", "src/f.py", "README.md")
    git("commit", "-qm", "one")
    sha = git("rev-parse", "HEAD").strip()
    assert code_version(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "README.md").write_text("b")  # not code
    assert code_version(tmp_path) == {"commit": sha, "dirty": False}
    (tmp_path / "src" / "f.py").write_text("b")
    assert code_version(tmp_path) == {"commit": sha, "dirty": True}


def test_runs_ending_in_the_same_second_keep_separate_files(tmp_path):
    for run_id in ("2026-11-22T01.00.00.001Z", "2026-11-22T01.00.00.002Z"):
        hooks = NodeTimingHooks(directory="t")
        hooks.before_pipeline_run({"project_path": tmp_path, "run_id": run_id})
        node = SimpleNamespace(name="n", tags=set())
        hooks.before_node_run(node)
        hooks.after_node_run(node)
        hooks.after_pipeline_run()
    assert len(list((tmp_path / "t").glob("*.json"))) == 2


def test_hf_progress_bars_are_disabled_off_a_terminal(monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    from sapo_pipeline.hooks import QuietProgressHooks

    class _Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    try:
        hf_logging.enable_progress_bar()  # earlier in-process Kedro runs may have disabled them
        enable_progress_bars()
        monkeypatch.setattr("sys.stderr", _Tty(True))
        QuietProgressHooks().after_context_created(None)
        assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
        monkeypatch.setattr("sys.stderr", _Tty(False))
        QuietProgressHooks().after_context_created(None)
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    finally:
        hf_logging.enable_progress_bar()
        enable_progress_bars()


def test_rich_log_handlers_off_a_terminal_become_plain_unwrapped_ones():
    import io
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    from sapo_pipeline.hooks import plain_log_handlers

    logger = logging.getLogger("sapo_test_plain_logs")
    logger.propagate = False
    piped, tty = io.StringIO(), io.StringIO()
    off = RichHandler(console=Console(file=piped, force_terminal=False, width=80))
    on = RichHandler(console=Console(file=tty, force_terminal=True, width=80))
    off.setLevel(logging.INFO)
    logger.handlers[:] = [off, on]
    try:
        assert plain_log_handlers(logger) == 1
        assert on in logger.handlers and off not in logger.handlers
        plain = next(h for h in logger.handlers if h is not on)
        assert type(plain) is logging.StreamHandler and plain.level == logging.INFO
        message = "a long line " * 20  # 240 characters: rich wraps it at 80 columns
        logger.warning(message.strip())
        lines = piped.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].endswith(message.strip())
        assert "WARNING sapo_test_plain_logs: a long line" in lines[0]
        assert plain_log_handlers(logger) == 0  # idempotent
    finally:
        logger.handlers[:] = []
