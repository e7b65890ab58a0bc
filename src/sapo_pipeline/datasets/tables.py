"""Kedro datasets for tables, arrays and reports, written atomically.

kedro-datasets writes straight to the target path, so an interrupted run can leave a torn
file that the next run happily loads. These write to a temporary file in the same directory
and ``os.replace`` it into place: a reader sees the old file or the new one, never half.
They are local-filesystem datasets (DVC handles remotes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import polars as pl
from kedro.io.core import AbstractDataset, DatasetError

from sapo_pipeline.io_utils import atomic_path

log = logging.getLogger(__name__)


class _LocalFileDataset(AbstractDataset):
    """Shared plumbing: a local file path, load/save args, metadata, atomic save."""

    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = PurePosixPath(filepath)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    @property
    def path(self) -> Path:
        return Path(str(self._filepath))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "load_args": self._load_args, "save_args": self._save_args}

    def _exists(self) -> bool:
        return self.path.is_file()

    def _check_exists(self) -> None:
        if not self.path.is_file():
            raise DatasetError(f"{type(self).__name__}: no file at {self.path}; run the node that writes it")

    def _atomic_write(self, write: Callable[[Path], None], suffix: str = "") -> None:
        with atomic_path(self.path, suffix) as tmp:
            write(tmp)


class ParquetDataset(_LocalFileDataset):
    """A polars DataFrame stored as a parquet file (zstd), written atomically."""

    def load(self) -> pl.DataFrame:
        self._check_exists()
        return pl.read_parquet(self.path, **self._load_args)

    def save(self, data: pl.DataFrame) -> None:
        if not isinstance(data, pl.DataFrame):
            raise DatasetError(f"ParquetDataset({self.path}) expects a polars DataFrame, got {type(data)}")
        args = {"compression": "zstd", **self._save_args}
        self._atomic_write(lambda tmp: data.write_parquet(tmp, **args), ".parquet")


class JSONDataset(_LocalFileDataset):
    """A JSON document (dict or list), pretty-printed with sorted keys, written atomically."""

    def load(self) -> Any:
        self._check_exists()
        return json.loads(self.path.read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        args = {"indent": 2, "sort_keys": True, **self._save_args}
        text = json.dumps(data, **args, default=_json_default) + "\n"
        self._atomic_write(lambda tmp: tmp.write_text(text, encoding="utf-8"), ".json")


class NumpyDataset(_LocalFileDataset):
    """A numpy array in .npy format (no pickle), written atomically."""

    def load(self) -> np.ndarray:
        self._check_exists()
        return np.load(self.path, allow_pickle=False, **self._load_args)

    def save(self, data: np.ndarray) -> None:
        arr = np.asarray(data)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)

        self._atomic_write(write, ".npy")


class TextDataset(_LocalFileDataset):
    """A UTF-8 text file (markdown reports, CSV logs), written atomically."""

    def load(self) -> str:
        self._check_exists()
        return self.path.read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        self._atomic_write(lambda tmp: tmp.write_text(data, encoding="utf-8"))


class MatplotlibPNGDataset(_LocalFileDataset):
    """A matplotlib figure saved as PNG, written atomically (load returns the PNG bytes)."""

    def load(self) -> bytes:
        self._check_exists()
        return self.path.read_bytes()

    def save(self, data: Any) -> None:
        import matplotlib.pyplot as plt

        args = {"dpi": 120, "bbox_inches": "tight", **self._save_args}
        self._atomic_write(lambda tmp: data.savefig(tmp, format="png", **args), ".png")
        plt.close(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj)}")
