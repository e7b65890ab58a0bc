"""Config fields that every training loop has (SFT: ``TrainConfig``; RL: ``RLTrainConfig``), each
declared once with its help, and one check per group: the optimiser and the run (device,
precision, resume, threads, progress)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from sapo_pipeline.config_utils import check_choice, check_positive
from sapo_pipeline.training import AUTOCAST_MODES, RESUME_MODES

DEVICES = ("auto", "cpu")


def _field(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


# ---- optimiser (AdamW with warm-up then cosine decay to min_lr_ratio * lr)
def lr(default: float) -> Any:
    return _field(default, "Peak learning rate (AdamW).")


def betas(default: tuple[float, float]) -> Any:
    return _field(default, "AdamW betas.")


def weight_decay(default: float) -> Any:
    return _field(default, "AdamW decoupled weight decay; biases and norm weights are exempt.")


def adam_eps() -> Any:
    return _field(1e-8, "AdamW epsilon.")


def max_grad_norm() -> Any:
    return _field(1.0, "Clip the global gradient norm to this (null: no clip).")


# ---- the run
def seed(help_text: str) -> Any:
    return _field(0, help_text)


def work_dir(default: str) -> Any:
    return _field(default, "Resume state (checkpoints, live log) of this stage, relative to the "
                           "project root; not an output of the pipeline.")


def resume() -> Any:
    return _field("auto", "auto (resume from a compatible checkpoint in work_dir, else start "
                          "fresh) | never (start fresh, clear work_dir) | require (fail without "
                          "a compatible checkpoint).")


def device() -> Any:
    return _field("auto", "auto (GPU when available) | cpu.")


def autocast() -> Any:
    return _field("auto", "bf16 autocast: auto (bf16 on CUDA with bf16 support; off on CPU, "
                          "where we measured it slower: 0.85x the float32 tokens/s, "
                          "bench/sft/run.py) | bf16 | off.")


def num_threads() -> Any:
    return _field(None, "torch intra-op threads per process (null: torch default).")


def progress_bar() -> Any:
    return _field(True, "Show a tqdm progress bar (on a terminal only).")


def save_total_limit() -> Any:
    return _field(1, "Resume checkpoints kept in work_dir (oldest removed).")


def check_optimiser(owner: str, cfg: Any) -> None:
    """lr and adam_eps > 0, weight_decay >= 0, two betas in [0, 1) (stored as a tuple),
    min_lr_ratio in [0, 1], max_grad_norm > 0 or null."""
    check_positive(owner, "lr", cfg.lr)
    check_positive(owner, "adam_eps", cfg.adam_eps)
    check_positive(owner, "max_grad_norm", cfg.max_grad_norm, allow_none=True)
    check_positive(owner, "weight_decay", cfg.weight_decay, allow_zero=True)
    cfg.betas = tuple(float(b) for b in cfg.betas)
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"{owner}.betas={cfg.betas}: two values in [0, 1)")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"{owner}.min_lr_ratio={cfg.min_lr_ratio}: must be in [0, 1]")


def check_run(owner: str, cfg: Any) -> None:
    """The resume, device and autocast choices, threads > 0 or null, checkpoints kept > 0,
    seed >= 0 and a work_dir."""
    check_choice(owner, "resume", cfg.resume, RESUME_MODES)
    check_choice(owner, "device", cfg.device, DEVICES)
    check_choice(owner, "autocast", cfg.autocast, AUTOCAST_MODES)
    check_positive(owner, "num_threads", cfg.num_threads, allow_none=True)
    check_positive(owner, "save_total_limit", cfg.save_total_limit)
    check_positive(owner, "seed", cfg.seed, allow_zero=True)
    if not cfg.work_dir:
        raise ValueError(f"{owner}.work_dir: required")
