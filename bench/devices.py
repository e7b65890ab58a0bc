"""Where a benchmark runs: ``--device`` (cpu | cuda | auto) and the synchronisation its timers
need. CUDA launches kernels asynchronously, so a wall-clock timer around GPU work must wait for
the device first; on CPU :func:`synchronize` does nothing."""

from __future__ import annotations

import argparse
from typing import Any

import torch

DEVICES = ("cpu", "cuda", "auto")


def add_device_arg(ap: argparse.ArgumentParser, default: str = "cpu") -> None:
    ap.add_argument("--device", choices=DEVICES, default=default,
                    help="where the models run (auto: cuda when available); the figures are "
                         "this device's (bench/gpu/run.sh runs the benches with cuda)")


def resolve(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device "
                         f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    return torch.device(device)


def synchronize() -> None:
    """Wait for queued GPU work (a no-op without CUDA), so timers measure what ran."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def describe(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on: the device, and for CUDA the GPU's name and memory."""
    out: dict[str, Any] = {"device": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()})
    return out
