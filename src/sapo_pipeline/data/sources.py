"""Resolve a :class:`SourceConfig` to files on disk and the reader that understands them."""

from __future__ import annotations

import logging
from pathlib import Path

from sapo_pipeline.config_utils import ConfigError
from sapo_pipeline.data.config import SourceConfig
from sapo_pipeline.data.readers import READERS, read_source
from sapo_pipeline.data.schema import RawSource
from sapo_pipeline.io_utils import sha256_file

log = logging.getLogger(__name__)

def raw_root(path: str | Path) -> Path:
    """``ingest.source.path`` as a directory: a missing path and a file are errors saying so."""
    root = Path(path)
    if root.is_file():
        raise NotADirectoryError(f"ingest.source.path={root} is a file; a folder holding the raw "
                                 f"files is expected (the folder of {root.name}: {root.parent})")
    if not root.is_dir():
        raise FileNotFoundError(f"raw data directory {root} does not exist (ingest.source.path)")
    return root


def open_source(cfg: SourceConfig, category: str | None = None) -> RawSource:
    """Read the configured source. ``category`` overrides ``cfg.category`` (synthetic data)."""
    root = raw_root(cfg.path)
    fmt = "amazon2023" if cfg.format == "synthetic" else cfg.format
    reader = READERS.get(fmt)
    if reader is None:
        raise ConfigError(f"ingest.source.format={fmt!r}: no such reader; registered: "
                          f"{sorted(READERS)} (sapo_pipeline.data.readers)")
    return read_source(fmt, **reader.resolve(root, dict(cfg.options), category or cfg.category))


def inventory(root: Path) -> dict:
    """Every file under ``root`` (recursively) with its size and sha256: the run's raw inputs."""
    root = raw_root(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"raw data directory {root} has no files")
    return {
        "root": str(root),
        "files": [
            {"path": str(p.relative_to(root)), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files
        ],
    }
