"""The SFT loop's resume state: its loop counters and log columns, in a
:class:`~sapo_pipeline.training.workdir.WorkDir` (layout and compatibility rules there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.io_utils import csv_to_rows, rows_to_csv
from sapo_pipeline.training.workdir import WorkDir

LOG_COLUMNS = ("step", "epoch", "train_loss", "valid_loss", "lr", "grad_norm", "tokens_per_s",
               "tokens", "elapsed_s")


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


def log_to_csv(rows: list[dict[str, Any]]) -> str:
    """The log rows as CSV text (fixed columns; empty cell where a value is absent)."""
    return rows_to_csv(rows, LOG_COLUMNS)


def csv_to_log(text: str) -> list[dict[str, Any]]:
    """Inverse of :func:`log_to_csv`."""
    return csv_to_rows(text, int_columns=("step", "epoch", "tokens"))


class SFTWorkDir(WorkDir):
    """The SFT loop's work directory: :class:`LoopState` counters and the SFT log columns."""

    state_type = LoopState
    encode_log = staticmethod(log_to_csv)
    decode_log = staticmethod(csv_to_log)
