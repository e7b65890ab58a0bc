"""Kedro datasets this project needs and kedro-datasets lacks.

Imported lazily: the catalog names e.g. ``sapo_pipeline.datasets.ParquetDataset``, and only a
run that uses checkpoints pays for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ParquetDataset": "tables",
    "JSONDataset": "tables",
    "NumpyDataset": "tables",
    "TextDataset": "tables",
    "MatplotlibPNGDataset": "tables",
    "SafetensorsDataset": "tensors",
    "HFCheckpointDataset": "checkpoint",
    "HFTokenizerDataset": "checkpoint",
    "RawSourceDataset": "ingest",
    "LedgersDataset": "ingest",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
