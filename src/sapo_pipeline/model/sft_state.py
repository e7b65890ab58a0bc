"""Resume state of the SFT loop: one working directory per stage, atomic checkpoints.

Layout of ``TrainConfig.work_dir`` (e.g. ``data/06_models/align_work``)::

    log.csv                        the live training log (rewritten at every log row)
    checkpoint-000120/             one resume point, written atomically (tmp dir + rename)
      trainable.safetensors        the trainable parameters (frozen ones are rebuilt exactly)
      best.safetensors             trainable parameters of the best valid loss so far, when it
                                   is not this step (load_best_at_end)
      optimizer.pt                 AdamW state (torch.save of tensors; read with weights_only)
      scheduler.json               LambdaLR state
      rng.safetensors              torch RNG state of every process (r<rank>_cpu, r<rank>_cuda)
      log.csv                      log rows up to this step
      state.json                   step, data-order position (epoch, step in epoch), early
                                   stopping, fingerprint -- written last: a checkpoint without
                                   it is incomplete and ignored

A checkpoint is *compatible* when its fingerprint (a hash of the data, the initial weights, the
world size and every config field that changes the trajectory) equals the current run's. Only
the main process writes; every process reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "log.csv"
LOG_COLUMNS = ("step", "epoch", "train_loss", "valid_loss", "lr", "grad_norm", "tokens_per_s",
               "tokens", "elapsed_s")
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class LoopState:
    """Counters of the loop that a resume must restore."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_valid: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int | None = None
    stopped_early: bool = False
    completed: bool = False
    tokens_seen: int = 0
    train_seconds: float = 0.0
    window: dict[str, float] = field(default_factory=lambda: {
        "loss_sum": 0.0, "labels": 0.0, "tokens": 0.0, "grad_norm_sum": 0.0, "steps": 0.0,
        "seconds": 0.0})


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable hash of a JSON-able dict."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def weights_hash(model: torch.nn.Module) -> str:
    """Hash of every parameter's bytes (decides whether a checkpoint fits these initial weights)."""
    h = hashlib.blake2b(digest_size=16)
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the trainable parameters (tied weights once)."""
    return {n: p.detach().to("cpu", copy=True).contiguous()
            for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy ``tensors`` into the trainable parameters; every one must match by name and shape."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(f"{where}: parameters do not match the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != tensors[name].shape:
                raise ValueError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, "
                                 f"model expects {tuple(p.shape)}")
            p.copy_(tensors[name].to(p.device, p.dtype))


def log_to_csv(rows: list[dict[str, Any]]) -> str:
    """The log rows as CSV text (fixed columns; empty cell where a value is absent)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in LOG_COLUMNS})
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return v


def csv_to_log(text: str) -> list[dict[str, Any]]:
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for k, v in rec.items():
            if v in ("", None):
                row[k] = None
            elif k in ("step", "epoch", "tokens"):
                row[k] = int(float(v))
            else:
                row[k] = float(v)
        rows.append(row)
    return rows


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class WorkDir:
    """The resume state of one stage (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, fingerprint_: str, is_main: bool) -> None:
        self.root = Path(path)
        self.fingerprint = fingerprint_
        self.is_main = is_main
        self._live_rows: int | None = None

    # ---------------------------------------------------------------- discovery
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (with state.json), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and (p / STATE_FILE).is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def _fingerprint_of(self, ckpt: Path) -> str | None:
        try:
            return json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError):
            return None

    def prepare(self, resume: str) -> Path | None:
        """The checkpoint to resume from (None: start fresh), after tidying the directory.

        Main process only tidies: leftovers of interrupted saves are removed; with
        ``resume="never"`` or for incompatible checkpoints the old state is removed (logged).
        Call :meth:`prepare` on every process, then synchronise, then :meth:`latest`.
        """
        latest = self.latest()
        if resume == "require" and latest is None:
            raise FileNotFoundError(
                f"TrainConfig.resume='require': no checkpoint in {self.root} matches this run "
                f"(fingerprint {self.fingerprint})")
        if not self.is_main:
            return None if resume == "never" else latest
        self.root.mkdir(parents=True, exist_ok=True)
        for p in self.root.glob(".checkpoint-*"):
            logger.warning("removing leftover of an interrupted checkpoint save: %s", p)
            shutil.rmtree(p, ignore_errors=True)
        for step, p in self.checkpoints():
            if resume == "never" or self._fingerprint_of(p) != self.fingerprint:
                logger.warning("%s: removing checkpoint-%d (%s)", self.root, step,
                               "resume=never" if resume == "never" else "a different run")
                shutil.rmtree(p, ignore_errors=True)
        return None if resume == "never" else latest

    def latest(self) -> Path | None:
        good = [p for _, p in self.checkpoints() if self._fingerprint_of(p) == self.fingerprint]
        return good[-1] if good else None

    # ---------------------------------------------------------------- save / load
    def save(self, state: LoopState, *, trainable: dict[str, torch.Tensor],
             best: dict[str, torch.Tensor] | None, optimizer: dict, scheduler: dict,
             rng: dict[str, torch.Tensor], log_rows: list[dict], keep: int) -> Path:
        """Write one checkpoint atomically (main process) and prune to ``keep`` checkpoints."""
        target = self.root / f"checkpoint-{state.step:06d}"
        tmp = self.root / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(parents=True)
        try:
            save_file(trainable, str(tmp / "trainable.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            torch.save(optimizer, tmp / "optimizer.pt")
            (tmp / "scheduler.json").write_text(json.dumps(scheduler), encoding="utf-8")
            save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
            (tmp / LOG_FILE).write_text(log_to_csv(log_rows), encoding="utf-8")
            payload = {"fingerprint": self.fingerprint, **asdict(state)}
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
        for _, p in self.checkpoints()[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        return target

    @staticmethod
    def load(ckpt: Path, device: torch.device) -> dict[str, Any]:
        """Everything :meth:`save` wrote, tensors on ``device`` (optimizer) or CPU."""
        raw = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        raw.pop("fingerprint", None)
        best = ckpt / "best.safetensors"
        return {
            "state": LoopState(**raw),
            "trainable": load_file(str(ckpt / "trainable.safetensors")),
            "best": load_file(str(best)) if best.is_file() else None,
            "optimizer": torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True),
            "scheduler": json.loads((ckpt / "scheduler.json").read_text(encoding="utf-8")),
            "rng": load_file(str(ckpt / "rng.safetensors")),
            "log": csv_to_log((ckpt / LOG_FILE).read_text(encoding="utf-8")),
        }

    def write_live_log(self, rows: list[dict]) -> None:
        """Keep ``work_dir/log.csv`` current: rewritten once per run (resumed rows included),
        then appended to."""
        if not self.is_main:
            return
        path = self.root / LOG_FILE
        written = self._live_rows
        if written is None or written > len(rows) or not path.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            _write_text(path, log_to_csv(rows))
        else:
            text = log_to_csv(rows[written:]).split("\n", 1)[1]  # without the header
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
        self._live_rows = len(rows)
