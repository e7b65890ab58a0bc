"""AdamW with decay / no-decay parameter groups, and a linear warm-up + cosine schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class WarmupCosine:
    """lr multiplier: linear 0 -> 1 over ``warmup`` steps, then cosine 1 -> ``min_ratio``.

    A callable object (not a lambda) so ``LambdaLR.state_dict()`` records its fields as JSON.
    Step ``s`` is the number of optimizer steps taken so far (``LambdaLR``'s ``last_epoch``);
    the lr of the *next* update is ``lr * factor(s)``, so the first update uses ``1 / warmup``.
    """

    warmup: int
    total: int
    min_ratio: float

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(total: int, warmup_steps_: int | None, warmup_ratio: float) -> int:
    """Warm-up length: the explicit step count, else ``ceil(ratio * total)``, at most ``total``."""
    n = warmup_steps_ if warmup_steps_ is not None else math.ceil(warmup_ratio * total)
    return int(min(n, total))


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    lowered = name.lower()
    return param.ndim < 2 or "norm" in lowered or lowered.endswith(".bias")


def build_optimizer(model: torch.nn.Module, *, lr: float, betas: tuple[float, float],
                    weight_decay: float, eps: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norm weights get no weight decay."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (keep if _no_decay(name, param) else decay).append(param)
    if not decay and not keep:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps,
                             foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, *, total: int, warmup: int,
                    min_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total, min_ratio))
