"""Kedro datasets of the ingest pipeline's intermediate objects, passed between nodes whole.

``RawSourceDataset``: a reader's :class:`~sapo_pipeline.data.schema.RawSource` as a directory
(``reviews.parquet``, ``items.parquet``, ``rejects.parquet``, ``published_samples.parquet`` when
the source is pre-split, ``summary.json`` with the line counts, notes and flags), written
atomically. ``LedgersDataset``: the cleaning steps' :class:`~sapo_pipeline.data.accounting.Ledger`
list as JSON (identity flags included for a reader of the file).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from kedro.io.core import AbstractDataset, DatasetError

from sapo_pipeline.data.accounting import Ledger
from sapo_pipeline.data.schema import RawSource
from sapo_pipeline.io_utils import write_directory_atomically, write_text_atomically

_TABLES = ("reviews", "items", "rejects")


class _LocalPath(AbstractDataset):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        return Path(str(self._filepath))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class RawSourceDataset(_LocalPath):
    """A RawSource as a directory (see the module docstring)."""

    def _save(self, data: RawSource) -> None:
        def write(tmp: Path) -> None:
            for name in _TABLES:
                getattr(data, name).write_parquet(tmp / f"{name}.parquet")
            if data.published_samples is not None:
                data.published_samples.write_parquet(tmp / "published_samples.parquet")
            summary = {"lines_read": data.lines_read, "has_timestamps": data.has_timestamps,
                       "notes": data.notes, "line_files": data.line_files,
                       "pre_split": data.published_samples is not None}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))

        write_directory_atomically(self.path, write)

    def _load(self) -> RawSource:
        if not (self.path / "summary.json").is_file():
            raise DatasetError(f"RawSourceDataset: no complete raw source at {self.path}; run "
                               f"the read_raw_source node")
        summary = json.loads((self.path / "summary.json").read_text())
        tables = {name: pl.read_parquet(self.path / f"{name}.parquet") for name in _TABLES}
        published = (pl.read_parquet(self.path / "published_samples.parquet")
                     if summary["pre_split"] else None)
        return RawSource(**tables, lines_read=summary["lines_read"], published_samples=published,
                         has_timestamps=summary["has_timestamps"], notes=summary["notes"],
                         line_files=summary["line_files"])

    def _exists(self) -> bool:
        return (self.path / "summary.json").is_file()


class LedgersDataset(_LocalPath):
    """A list of Ledgers as JSON."""

    def _save(self, data: list[Ledger]) -> None:
        write_text_atomically(self.path, json.dumps([x.to_dict() for x in data], indent=2))

    def _load(self) -> list[Ledger]:
        if not self.path.is_file():
            raise DatasetError(f"LedgersDataset: no file at {self.path}")
        return [Ledger.from_dict(d) for d in json.loads(self.path.read_text())]

    def _exists(self) -> bool:
        return self.path.is_file()
