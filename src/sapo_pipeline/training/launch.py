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
import subprocess
import sys
from dataclasses import dataclass, field
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
        metadata={"help": "accelerate (accelerate launch; takes an accelerate / DeepSpeed "
                          "config_file) | torchrun. Used only with more than one process."},
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
        metadata={"help": "accelerate config file (e.g. a DeepSpeed ZeRO-2 one); its values "
                          "are overridden by the fields above."},
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


def launch_command(cfg: LauncherConfig, run_config: Path) -> list[str]:
    """The launcher's command line for the entry point with ``--config run_config``."""
    entry = ["-m", ENTRY_MODULE, "--config", str(run_config)]
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
    """The errors the ranks wrote (rank, traceback text), lowest rank first."""
    folder = Path(launch_dir) / "errors"
    out = []
    for path in sorted(folder.glob("rank*.txt")):
        try:
            out.append((int(path.stem[4:]), path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return sorted(out)


def launch(cfg: LauncherConfig, run_config: Path, *, env: dict[str, str] | None = None,
           cwd: str | Path | None = None, logger: logging.Logger | None = None) -> None:
    """Run the entry point under the launcher; stream its output; raise :class:`LaunchError`
    naming the failing rank's error when the job fails."""
    logger = logger or log
    launch_dir = Path(run_config).parent
    errors = launch_dir / "errors"
    if errors.is_dir():
        for stale in errors.glob("rank*.txt"):
            stale.unlink()
    cmd = launch_command(cfg, run_config)
    logger.info("launching %d processes: %s", cfg.num_processes, " ".join(cmd))
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line:
                logger.info("[launch] %s", line)
                tail = (tail + [line])[-40:]
        code = proc.wait(timeout=cfg.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise LaunchError(f"{ENTRY_MODULE}: killed after timeout_s={cfg.timeout_s}") from None
    except BaseException:  # KeyboardInterrupt: do not leave the workers running
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        failed = rank_errors(launch_dir)
        if failed:
            rank, text = failed[0]
            last = text.strip().splitlines()[-1] if text.strip() else "(empty traceback)"
            raise LaunchError(f"rank {rank} failed: {last}\n\n{text}")
        raise LaunchError(f"the launcher exited with status {code} and no rank reported an "
                          "error; its last lines:\n" + "\n".join(tail))
