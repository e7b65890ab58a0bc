"""Resume state of the RL loop, in ``RLTrainConfig.work_dir``.

Discovery, compatibility (fingerprint) and tidying are :class:`sapo_pipeline.model.sft_state.WorkDir`'s;
this module writes its own checkpoint content, because the RL loop state and log columns differ
from the SFT ones::

    log.csv                        live per-step diagnostics (rl.diagnostics columns)
    checkpoint-000040/             written atomically (tmp dir + rename)
      trainable.safetensors        trainable parameters of the policy
      optimizer.pt                 AdamW state (torch.save of tensors; read with weights_only)
      scheduler.json               LambdaLR state
      rng.safetensors              torch RNG state of every process
      log.csv                      diagnostics rows up to this step
      state.json                   RLState + fingerprint -- written last (marks it complete)

The reference model is not stored: it is always the starting (stage-2) model the run was given.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sapo_pipeline.model.sft_state import LOG_FILE, STATE_FILE, WorkDir
from sapo_pipeline.rl.diagnostics import csv_to_log, log_to_csv


@dataclass
class RLState:
    """Counters a resume restores."""

    step: int = 0
    completed: bool = False
    optimizer_steps: int = 0
    rollout_seconds: float = 0.0
    update_seconds: float = 0.0
    eval_seconds: float = 0.0
    tokens_generated: int = 0


class RLWorkDir:
    """Checkpoints of one RL run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, is_main: bool) -> None:
        self.dirs = WorkDir(path, fingerprint, is_main)

    @property
    def root(self) -> Path:
        return self.dirs.root

    def prepare(self, resume: str) -> Path | None:
        """The checkpoint to resume from (None: fresh); tidies on the main process."""
        return self.dirs.prepare(resume)

    def save(self, state: RLState, *, trainable: dict[str, torch.Tensor], optimizer: dict,
             scheduler: dict, rng: dict[str, torch.Tensor], log_rows: list[dict],
             keep: int) -> Path:
        """Write one checkpoint atomically (main process) and keep the newest ``keep``."""
        target = self.root / f"checkpoint-{state.step:06d}"
        tmp = self.root / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(parents=True)
        try:
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save(optimizer, tmp / "optimizer.pt")
            (tmp / "scheduler.json").write_text(json.dumps(scheduler), encoding="utf-8")
            save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
            (tmp / LOG_FILE).write_text(log_to_csv(log_rows), encoding="utf-8")
            payload = {"fingerprint": self.dirs.fingerprint, **asdict(state)}
            (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if target.exists():
            old = self.root / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        for _, p in self.dirs.checkpoints()[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        return target

    @staticmethod
    def load(ckpt: Path, device: torch.device) -> dict[str, Any]:
        raw = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        raw.pop("fingerprint", None)
        return {
            "state": RLState(**raw),
            "trainable": load_file(str(ckpt / "trainable.safetensors")),
            "optimizer": torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True),
            "scheduler": json.loads((ckpt / "scheduler.json").read_text(encoding="utf-8")),
            "rng": load_file(str(ckpt / "rng.safetensors")),
            "log": csv_to_log((ckpt / LOG_FILE).read_text(encoding="utf-8")),
        }

    def write_live_log(self, rows: list[dict]) -> None:
        if self.dirs.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{LOG_FILE}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.write_text(log_to_csv(rows), encoding="utf-8")
            os.replace(tmp, self.root / LOG_FILE)
