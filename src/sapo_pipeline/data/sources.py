"""Resolve a :class:`SourceConfig` to files on disk and the reader that understands them."""

from __future__ import annotations

import logging
from pathlib import Path

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.config import SourceConfig
from sapo_pipeline.data.readers import read_source
from sapo_pipeline.data.schema import RawSource
from sapo_pipeline.io_utils import sha256_file

log = logging.getLogger(__name__)

#: File name patterns per Amazon release: (reviews, meta), tried plain then gzipped.
_AMAZON_FILES = {
    "amazon2023": ("{cat}.jsonl", "meta_{cat}.jsonl"),
    "amazon2018": ("{cat}.json", "meta_{cat}.json"),
}


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"expected {root / name} (or {name}.gz): not found")


def _categories(root: Path, fmt: str) -> list[str]:
    """Categories of ``fmt``'s meta files in ``root`` (``meta_<cat>.json[l][.gz]``, exactly)."""
    prefix, suffix = _AMAZON_FILES[fmt][1].split("{cat}")
    names = {p.name.removesuffix(".gz") for p in root.iterdir() if p.is_file()}
    return sorted(n[len(prefix): len(n) - len(suffix)] for n in names
                  if n.startswith(prefix) and n.endswith(suffix) and len(n) > len(prefix + suffix))


def _detect_category(root: Path, fmt: str) -> str:
    found = _categories(root, fmt)
    if len(found) == 1:
        return found[0]
    pattern = _AMAZON_FILES[fmt][1].replace("{cat}", "*")
    hint = ""
    for other in _AMAZON_FILES:
        if other != fmt and not found and (theirs := _categories(root, other)):
            hint = (f"; the folder holds {other} files ({_AMAZON_FILES[other][1].format(cat=theirs[0])}"
                    f"): set ingest.source.format: {other}")
    raise InputError(f"{root}: set ingest.source.category; expected exactly one {pattern} file, "
                     f"found {found}{hint}")


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
    opts = dict(cfg.options)
    if fmt in _AMAZON_FILES:
        cat = category or cfg.category or _detect_category(root, fmt)
        reviews_name, meta_name = (p.format(cat=cat) for p in _AMAZON_FILES[fmt])
        return read_source(fmt, reviews_path=_find(root, reviews_name), meta_path=_find(root, meta_name), **opts)
    if fmt == "minionerec":
        split_dir = root / opts.pop("split_dir", ".")
        ts = opts.pop("timestamps_dir", None)
        return read_source(
            fmt,
            split_dir=split_dir,
            timestamps_dir=(root / ts) if ts else None,
            category=category or cfg.category,
            **opts,
        )
    if fmt == "lcrec" and opts.get("titles_tsv"):
        opts["titles_tsv"] = root / opts["titles_tsv"]
    return read_source(fmt, dir=root, **opts)


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
