"""The accelerator and the precision of a training loop (SFT and RL alike)."""

from __future__ import annotations

import torch
from accelerate import Accelerator


def make_accelerator(device: str) -> Accelerator:
    """An Accelerator for ``device`` (``auto`` | ``cpu``): on CPU when asked or when no GPU
    exists (gloo across CPU processes)."""
    cpu = device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="no")


def use_bf16(mode: str, device: torch.device) -> bool:
    """autocast=auto: bf16 on CUDA devices that support it; off on CPU (measured slower)."""
    if mode == "bf16":
        return True
    if mode == "off":
        return False
    return device.type == "cuda" and torch.cuda.is_bf16_supported()
