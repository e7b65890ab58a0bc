"""The resume state of a training loop (SFT and RL): one working directory per stage, atomic
checkpoints.

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

:class:`WorkDir` is generic over the loop state and the log format (class attributes
``state_type``, ``encode_log``, ``decode_log``): each loop subclasses it
(:class:`sapo_pipeline.model.sft_state.SFTWorkDir`, :class:`sapo_pipeline.rl.state.RLWorkDir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from sapo_pipeline.io_utils import (
    write_directory_atomically,
    write_text_atomically,
)

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "log.csv"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


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


class WorkDir:
    """The resume state of one stage (see the module docstring)."""

    #: Set by each loop's subclass (``SFTWorkDir``, ``RLWorkDir``): the dataclass of the loop
    #: counters stored in ``state.json`` (with the fingerprint), and log rows -> CSV text
    #: (header line first) and back.
    state_type: ClassVar[type]
    encode_log: ClassVar[Callable[[list[dict[str, Any]]], str]]
    decode_log: ClassVar[Callable[[str], list[dict[str, Any]]]]

    def __init__(self, path: str | os.PathLike, fingerprint_: str, is_main: bool) -> None:
        self.root = Path(path)
        self.fingerprint = fingerprint_
        self.is_main = is_main
        self._live_rows: int | None = None
        self._live_header: str | None = None

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
    def save(self, state: Any, *, trainable: dict[str, torch.Tensor], optimizer: dict,
             scheduler: dict, rng: dict[str, torch.Tensor], log_rows: list[dict], keep: int,
             best: dict[str, torch.Tensor] | None = None) -> Path:
        """Write one checkpoint atomically (main process) and prune to ``keep`` checkpoints.

        ``state`` is a ``state_type`` instance; ``state.json`` is written last."""
        target = self.root / f"checkpoint-{state.step:06d}"

        def write(tmp: Path) -> None:
            save_file(trainable, str(tmp / "trainable.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            torch.save(optimizer, tmp / "optimizer.pt")
            (tmp / "scheduler.json").write_text(json.dumps(scheduler), encoding="utf-8")
            save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
            (tmp / LOG_FILE).write_text(self.encode_log(log_rows), encoding="utf-8")
            payload = {"fingerprint": self.fingerprint, **asdict(state)}
            (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")

        write_directory_atomically(target, write)
        for _, p in self.checkpoints()[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        return target

    @classmethod
    def load(cls, ckpt: Path, device: torch.device) -> dict[str, Any]:
        """Everything :meth:`save` wrote, tensors on ``device`` (optimizer) or CPU; ``best`` is
        None when the checkpoint has no separate best weights."""
        raw = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        raw.pop("fingerprint", None)
        # under a multi-process CPU launch the device is "cpu:<rank>", which torch.load cannot
        # map storages to
        where = torch.device("cpu") if device.type == "cpu" else device
        best = ckpt / "best.safetensors"
        return {
            "state": cls.state_type(**raw),
            "trainable": load_file(str(ckpt / "trainable.safetensors")),
            "best": load_file(str(best)) if best.is_file() else None,
            "optimizer": torch.load(ckpt / "optimizer.pt", map_location=where, weights_only=True),
            "scheduler": json.loads((ckpt / "scheduler.json").read_text(encoding="utf-8")),
            "rng": load_file(str(ckpt / "rng.safetensors")),
            "log": cls.decode_log((ckpt / LOG_FILE).read_text(encoding="utf-8")),
        }

    def write_live_log(self, rows: list[dict]) -> None:
        """Keep ``work_dir/log.csv`` equal to ``encode_log(rows)``: the new rows are appended
        while their CSV header is the one already written, else the file is rewritten
        (atomically; always on the first call of a run, resumed rows included)."""
        if not self.is_main:
            return
        path = self.root / LOG_FILE
        written = self._live_rows
        if written is not None and written <= len(rows) and path.is_file():
            header, _, body = self.encode_log(rows[written:]).partition("\n")
            if header == self._live_header:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(body)
                self._live_rows = len(rows)
                return
        self.root.mkdir(parents=True, exist_ok=True)
        text = self.encode_log(rows)
        write_text_atomically(path, text)
        self._live_header = text.partition("\n")[0]
        self._live_rows = len(rows)
