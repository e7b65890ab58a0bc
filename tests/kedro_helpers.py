"""Run the project's Kedro CLI in a scratch copy of the project (so tests never touch ./data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_project(dest: Path) -> Path:
    """A scratch project: pyproject.toml, .telemetry and conf/ (minus local/), empty data layers."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", dest / ".telemetry")
    shutil.copytree(REPO / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir(exist_ok=True)
    (dest / "src").mkdir(exist_ok=True)  # Kedro wants a source dir; the package comes from PYTHONPATH
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
                  "06_models", "07_model_output", "08_reporting"):
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    return dest


def kedro(project: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """``kedro <args>`` in ``project`` with the offline environment; raises with output on failure."""
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kedro {' '.join(args)} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def resolved_config(kind: str, env: str | None = None,
                    runtime_params: dict | None = None) -> dict:
    """``parameters`` or ``catalog`` of conf/ as a run of ``env`` (None: base) sees it: merged
    as settings.py merges it, templates (``${_run_root}`` etc.) resolved."""
    from kedro.config import OmegaConfigLoader

    from sapo_pipeline.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    return OmegaConfigLoader(str(REPO / "conf"), env=env, runtime_params=runtime_params,
                             **args)[kind]


def base_catalog_config() -> dict:
    """Every entry of conf/base/catalog_*.yml, resolved (keys starting with ``_`` left out)."""
    return {name: entry for name, entry in resolved_config("catalog").items()
            if not name.startswith("_")}
