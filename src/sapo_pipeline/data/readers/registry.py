"""The readers' registry: each reader module declares its format once, with ``@register``.

A registration names the format (``ingest.source.format``), the read function (keyword arguments
only, returning a :class:`~sapo_pipeline.data.schema.RawSource`) and how the files are found
under ``ingest.source.path`` (``resolve(root, options, category) -> read kwargs``). Adding a
reader is one module in this package plus its tests: the package imports every module, the
config accepts every registered format, and ``open_source`` resolves its paths through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sapo_pipeline.data.schema import RawSource

Resolve = Callable[[Path, Mapping[str, Any], "str | None"], dict[str, Any]]


@dataclass(frozen=True)
class Reader:
    """One source format: its read function and how its files are found under a folder."""

    name: str
    read: Callable[..., RawSource]
    resolve: Resolve


READERS: dict[str, Reader] = {}


def register(name: str, resolve: Resolve) -> Callable[[Callable[..., RawSource]],
                                                      Callable[..., RawSource]]:
    """Decorator of a read function: register it as format ``name``."""

    def add(read: Callable[..., RawSource]) -> Callable[..., RawSource]:
        if name in READERS and READERS[name].read is not read:
            raise ValueError(f"source format {name!r} registered twice")
        READERS[name] = Reader(name, read, resolve)
        return read

    return add


def in_folder(option: str = "dir") -> Resolve:
    """Resolve: the folder itself is the reader's ``option`` (other options pass through; a
    ``*_tsv`` / ``*_dir`` option is relative to the folder)."""

    def resolve(root: Path, options: Mapping[str, Any], category: str | None) -> dict[str, Any]:
        kwargs = {option: root}
        for key, value in options.items():
            relative = key.endswith(("_tsv", "_dir")) and value is not None
            kwargs[key] = root / value if relative else value
        return kwargs

    return resolve
