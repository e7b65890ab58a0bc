"""A dict of arrays (model weights, codebooks) stored as a safetensors file, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from sapo_pipeline.datasets.tables import _LocalFileDataset


class SafetensorsDataset(_LocalFileDataset):
    """``{name: array or torch tensor}`` <-> a .safetensors file (no pickle).

    Loads numpy arrays; ``load_args: {framework: pt}`` gives torch tensors. A ``metadata``
    entry of ``save_args`` (a JSON-able dict) is stored in the file header.
    """

    def load(self) -> dict[str, Any]:
        self._check_exists()
        if self._load_args.get("framework") == "pt":
            from safetensors.torch import load_file as load_pt

            return load_pt(str(self.path))
        return load_file(str(self.path))

    def save(self, data: dict[str, Any]) -> None:
        arrays = {}
        for name, value in data.items():
            if hasattr(value, "detach"):  # torch tensor, without importing torch here
                value = value.detach().cpu().numpy()
            arrays[name] = np.ascontiguousarray(value)
        header = self._save_args.get("metadata")
        meta = {"json": json.dumps(header)} if header else None

        def write(tmp: Path) -> None:
            save_file(arrays, str(tmp), metadata=meta)

        self._atomic_write(write, ".safetensors")
