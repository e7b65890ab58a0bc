"""Which code a figure came from: the project's git commit and whether its code differs from it.

Kedro-free, so both the run-timing hook and the study archive (a library module) record it."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
