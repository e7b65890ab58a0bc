"""Launching a training stage on several processes with the launchers the field uses.

Kedro has no distributed runner; a node that must train on several processes starts the job
itself and returns what rank 0 wrote. :class:`LauncherConfig` is the ``launcher:`` section of a
training stage (``align.launcher``, ``reason.launcher``); with one process (the default) the node
trains in its own process as before. Otherwise :func:`launch` runs

* ``accelerate launch [--config_file F | --multi_gpu] --num_processes N --num_machines M --machine_rank R
  [--main_process_ip IP --main_process_port P] EXTRA -m sapo_pipeline.stages --config run.json``,
  or
* ``torchrun --nproc_per_node N/M --nnodes M --node_rank R [--master_addr IP --master_port P]
  EXTRA -m sapo_pipeline.stages --config run.json``,

streams the workers' output lines into this process's log, and, if any rank fails, raises
:class:`LaunchError` with the first failing rank's own error (every rank writes its traceback to
``<launch dir>/errors/rank<r>.txt``). The stage's entry point (:mod:`sapo_pipeline.stages`) is the
same library call the node makes in process; a cluster scheduler can run it directly.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from sapo_pipeline.config_utils import check_choice, check_positive

log = logging.getLogger(__name__)

LAUNCHERS = ("accelerate", "torchrun")
ENTRY_MODULE = "sapo_pipeline.stages"


class LaunchError(RuntimeError):
    """A launched stage failed; the message holds the failing rank's error."""


@dataclass
class LauncherConfig:
    """How a training stage's node runs it: in process (one process) or launched on several."""

    kind: str = field(
        default="accelerate",
        metadata={"help": "accelerate (accelerate launch; takes an accelerate config_file) | "
                          "torchrun. Used only with more than one process."},
    )
    num_processes: int = field(
        default=1,
        metadata={"help": "Processes over all machines (1: train inside the Kedro node, as "
                          "without a launcher). Per machine: num_processes / num_machines."},
    )
    num_machines: int = field(default=1, metadata={"help": "Machines (nodes) of the job."})
    machine_rank: int = field(default=0, metadata={"help": "This machine's rank (0: the main)."})
    main_process_ip: str | None = field(
        default=None, metadata={"help": "Address of machine 0 (needed with num_machines > 1)."}
    )
    main_process_port: int | None = field(
        default=None, metadata={"help": "Port on machine 0 (null: the launcher's default)."}
    )
    config_file: str | None = field(
        default=None,
        metadata={"help": "accelerate config file (multi-GPU / multi-node settings); its values "
                          "are overridden by the fields above. DeepSpeed is not supported by the "
                          "SFT loop yet."},
    )
    extra_args: list[str] = field(
        default_factory=list, metadata={"help": "Further launcher arguments, passed verbatim."}
    )
    timeout_s: float | None = field(
        default=None, metadata={"help": "Kill the job after this many seconds (null: never)."}
    )

    def __post_init__(self) -> None:
        o = "LauncherConfig"
        check_choice(o, "kind", self.kind, LAUNCHERS)
        for name in ("num_processes", "num_machines"):
            check_positive(o, name, getattr(self, name))
        check_positive(o, "timeout_s", self.timeout_s, allow_none=True)
        if not 0 <= self.machine_rank < self.num_machines:
            raise ValueError(f"{o}.machine_rank={self.machine_rank}: must be in [0, "
                             f"num_machines={self.num_machines})")
        if self.num_processes % self.num_machines:
            raise ValueError(f"{o}.num_processes={self.num_processes} is not divisible by "
                             f"num_machines={self.num_machines}")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError(f"{o}: num_machines={self.num_machines} needs main_process_ip")
        if self.config_file is not None and self.kind != "accelerate":
            raise ValueError(f"{o}.config_file: only for kind=accelerate")
        self.extra_args = [str(a) for a in (self.extra_args or [])]

    @property
    def in_process(self) -> bool:
        """One process on one machine: the node trains itself, no launcher."""
        return self.num_processes == 1 and self.num_machines == 1


def launch_command(cfg: LauncherConfig, run_config: Path,
                   module: str = ENTRY_MODULE) -> list[str]:
    """The launcher's command line for the entry point with ``--config run_config``."""
    entry = ["-m", module, "--config", str(run_config)]
    if cfg.kind == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if cfg.config_file:
            cmd += ["--config_file", cfg.config_file]
        else:  # without a config, accelerate launches ONE process on a machine without GPUs
            cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--num_processes", str(cfg.num_processes), "--num_machines",
                str(cfg.num_machines), "--machine_rank", str(cfg.machine_rank)]
        if cfg.main_process_ip:
            cmd += ["--main_process_ip", cfg.main_process_ip]
        if cfg.main_process_port:
            cmd += ["--main_process_port", str(cfg.main_process_port)]
        return [*cmd, *cfg.extra_args, *entry]
    cmd = [sys.executable, "-m", "torch.distributed.run",
           "--nproc_per_node", str(cfg.num_processes // cfg.num_machines),
           "--nnodes", str(cfg.num_machines), "--node_rank", str(cfg.machine_rank)]
    if cfg.main_process_ip:
        cmd += ["--master_addr", cfg.main_process_ip]
    if cfg.main_process_port:
        cmd += ["--master_port", str(cfg.main_process_port)]
    return [*cmd, *cfg.extra_args, *entry]


def rank_errors(launch_dir: Path) -> list[tuple[int, str]]:
    """The errors the ranks wrote (rank, traceback text), the earliest written first: the rank
    that failed first is the cause, the others mostly fail on its absence."""
    folder = Path(launch_dir) / "errors"
    out = []
    for path in folder.glob("rank*.txt"):
        try:
            out.append((path.stat().st_mtime_ns, int(path.stem[4:]),
                        path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return [(rank, text) for _, rank, text in sorted(out)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM then SIGKILL the launcher's whole process group (the launcher and its workers:
    killing only the launcher would leave the workers running)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(cfg: LauncherConfig, run_config: Path, *, env: dict[str, str] | None = None,
           cwd: str | Path | None = None, logger: logging.Logger | None = None,
           module: str = ENTRY_MODULE) -> None:
    """Run the entry point under the launcher; stream its output; raise :class:`LaunchError`
    naming the failing rank's error when the job fails (or runs past ``timeout_s``)."""
    logger = logger or log
    launch_dir = Path(run_config).parent
    errors = launch_dir / "errors"
    if errors.is_dir():
        for stale in errors.glob("rank*.txt"):
            stale.unlink()
    if cfg.num_machines == 1 and not cfg.main_process_port:  # two launches on one host
        cfg = replace(cfg, main_process_port=_free_port())
    cmd = launch_command(cfg, run_config, module)
    logger.info("launching %d processes: %s", cfg.num_processes, " ".join(cmd))
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, encoding="utf-8", errors="replace",
                            bufsize=1, start_new_session=True)
    tail: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line:
                logger.info("[launch] %s", line)
                tail[:] = (tail + [line])[-40:]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise LaunchError(f"{ENTRY_MODULE}: stopped after timeout_s={cfg.timeout_s}") from None
    except BaseException:  # KeyboardInterrupt, a Kedro stop: do not leave workers running
        _stop(proc)
        raise
    finally:
        reader.join(timeout=10)
    if code != 0:
        failed = rank_errors(launch_dir)
        if failed:
            rank, text = failed[0]
            last = text.strip().splitlines()[-1] if text.strip() else "(empty traceback)"
            others = ", ".join(str(r) for r, _ in failed[1:])
            raise LaunchError(f"rank {rank} failed: {last}"
                              + (f" (ranks {others} failed after it)" if others else "")
                              + f"\n\n{text}")
        raise LaunchError(f"the launcher exited with status {code} and no rank reported an "
                          "error (killed, out of memory?); its last lines:\n" + "\n".join(tail))
