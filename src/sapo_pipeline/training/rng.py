"""Torch RNG state of every process, for checkpoints that resume bit-exactly (SFT and RL loops).

States are keyed ``r<rank>_cpu`` and ``r<rank>_cuda`` (the latter on CUDA devices only), a flat
dict of tensors that ``safetensors`` can store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from accelerate import Accelerator


def gather_rng_state(acc: Accelerator) -> dict[str, torch.Tensor]:
    """Every process's torch RNG state (cpu, and its cuda device), keyed ``r<rank>_<kind>``.

    A collective: every process must call it; each gets every process's state."""
    parts = {"cpu": torch.get_rng_state()}
    if acc.device.type == "cuda":
        parts["cuda"] = torch.cuda.get_rng_state(acc.device)
    out = {}
    for kind, t in parts.items():
        every = acc.gather(t.to(acc.device).unsqueeze(0)).cpu()  # [processes, n]
        for r in range(every.shape[0]):
            out[f"r{r}_{kind}"] = every[r].contiguous()
    return out


def set_rng_state(states: dict[str, torch.Tensor], rank: int, device: torch.device) -> None:
    """Restore process ``rank``'s state saved by :func:`gather_rng_state`; ValueError when the
    checkpoint has none for that process."""
    key = f"r{rank}_cpu"
    if key not in states:
        raise ValueError(f"checkpoint has no RNG state for process {rank}")
    torch.set_rng_state(states[key])
    if device.type == "cuda" and f"r{rank}_cuda" in states:
        torch.cuda.set_rng_state(states[f"r{rank}_cuda"], device)
