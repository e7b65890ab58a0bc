"""Project hooks: parameters are validated before any node runs; node wall times are recorded;
third-party progress bars stay off the log, and log lines stay unwrapped, when it is not a
terminal."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from kedro.framework.hooks import hook_impl

from sapo_pipeline.io_utils import write_text_atomically
from sapo_pipeline.parameters import validate_parameters
from sapo_pipeline.provenance import code_version, environment

log = logging.getLogger(__name__)


class ParameterValidationHooks:
    """Build every typed parameter section from the merged config before a run starts."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - Kedro's signature
        sections = validate_parameters(context.params)
        log.info("parameters valid: %s", ", ".join(sorted(sections)) or "none")


class QuietProgressHooks:
    """Off a terminal (a log file, a pipe, CI), the progress bars of transformers / Hugging Face
    Hub ("Loading weights", downloads) are disabled: their carriage-return updates would pile up
    into single log lines. Our own loops use tqdm with ``disable=None`` (a bar only on a tty)."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - Kedro's signature
        if sys.stderr.isatty():
            return
        try:
            from huggingface_hub.utils import disable_progress_bars
            from transformers.utils import logging as hf_logging
        except ImportError:  # pragma: no cover - both are project dependencies
            return
        hf_logging.disable_progress_bar()
        disable_progress_bars()


PLAIN_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def plain_log_handlers(logger: logging.Logger) -> int:
    """Replace ``logger``'s rich handlers that do not write to a terminal by plain stream
    handlers (same stream and level): one unwrapped line per record, where rich would wrap at
    80 columns in a log file or a pipe. Returns how many were replaced."""
    from rich.logging import RichHandler

    replaced = 0
    for handler in list(logger.handlers):
        if not isinstance(handler, RichHandler) or handler.console.is_terminal:
            continue
        plain = logging.StreamHandler(handler.console.file)
        plain.setLevel(handler.level)
        plain.setFormatter(logging.Formatter(PLAIN_LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
        for log_filter in handler.filters:
            plain.addFilter(log_filter)
        logger.removeHandler(handler)
        logger.addHandler(plain)
        replaced += 1
    return replaced


class PlainLogHooks:
    """Off a terminal, Kedro's rich log handler becomes a plain one (see
    :func:`plain_log_handlers`); on a terminal nothing changes."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - Kedro's signature
        plain_log_handlers(logging.getLogger())


class NodeTimingHooks:
    """Record every node's wall time; log a summary and write it as JSON after the run.

    The JSON (``<directory>/<UTC timestamp>-<run id>.json``; by default ``<run root>/08_reporting/
    run_timings``, the run root being the ``_run_root`` parameter) lists nodes in completion order with their
    tags and seconds, and sums per tag; every stage tags its nodes with its pipeline name (and
    ``rl_<method>`` / ``evaluate_<model>`` per namespace), so the wall time of each stage of
    ``sapo_full`` is read off one file. It is run metadata (like Kedro's session
    store), not a node output: it lives outside the catalog and outside DVC's outputs.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._run_root = Path("data")
        self._start: dict[str, float] = {}
        self._nodes: list[dict] = []
        self._run_start = 0.0
        self._run_params: dict = {}
        self._project_path: Path | None = None

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - Kedro's signature
        self._run_root = Path(str(context.params.get("_run_root") or "data"))

    @hook_impl
    def before_pipeline_run(self, run_params: dict) -> None:
        self._start.clear()
        self._nodes = []
        self._run_start = time.perf_counter()
        self._run_params = {k: run_params.get(k) for k in
                            ("run_id", "pipeline_names", "env", "namespaces", "runtime_params",
                             "tags", "node_names", "from_nodes", "to_nodes")}
        self._project_path = Path(run_params.get("project_path") or ".")

    @hook_impl
    def before_node_run(self, node) -> None:  # noqa: ANN001 - Kedro's signature
        self._start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:  # noqa: ANN001 - Kedro's signature
        started = self._start.pop(node.name, None)
        if started is None:
            return
        seconds = time.perf_counter() - started
        self._nodes.append({"node": node.name, "tags": sorted(node.tags), "seconds": round(seconds, 3)})

    @hook_impl
    def after_pipeline_run(self) -> None:
        if not self._nodes:
            return
        summary = summarise_timings(self._nodes, time.perf_counter() - self._run_start)
        summary["run"] = {**self._run_params, "code": code_version(self._project_path),
                          "environment": environment()}
        for name, seconds in summary["by_tag"].items():
            log.info("wall time %-24s %8.1f s", name, seconds)
        log.info("wall time %-24s %8.1f s", "total", summary["total_seconds"])
        # a second-resolution stamp sorts; Kedro's run id keeps runs in the same second apart
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        run_id = re.sub(r"[^A-Za-z0-9_.-]", "_", str(self._run_params.get("run_id") or "run"))
        directory = self.directory or self._run_root / "08_reporting" / "run_timings"
        target = (self._project_path or Path(".")) / directory / f"{stamp}-{run_id}.json"
        write_text_atomically(target, json.dumps(summary, indent=2) + "\n")
        log.info("node timings written to %s", target)


def summarise_timings(nodes: list[dict], total_seconds: float) -> dict:
    """Sum node wall times per tag (a node counts towards each of its tags), keeping the list."""
    by_tag: dict[str, float] = {}
    for row in nodes:
        for tag in row["tags"] or ["untagged"]:
            by_tag[tag] = round(by_tag.get(tag, 0.0) + row["seconds"], 3)
    return {"total_seconds": round(total_seconds, 3), "by_tag": by_tag, "nodes": nodes}
