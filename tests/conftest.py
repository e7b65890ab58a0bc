"""Shared pytest set-up: offline environment, paths to the real data in ../shared."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Everything the project runs is offline and silent.
for _var, _val in {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_var, _val)

if str(REPO / "src") not in sys.path:  # works before `pip install -e .` too
    sys.path.insert(0, str(REPO / "src"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Amazon data beside the repo; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data absent: {SHARED_DATA} (clone ../shared beside the repo to run)")
    return SHARED_DATA
