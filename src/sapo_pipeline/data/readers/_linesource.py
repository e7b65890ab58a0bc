"""Byte access to a JSON-lines file for the core reader: plain or gzip, counted, sliced.

Plain files are never loaded whole: polars reads the path itself, lines are counted in
chunks, and only the rare re-check of a few lines maps the file (``mmap``). Gzip files are
decompressed once into memory.
"""

from __future__ import annotations

import gzip
import io
import mmap
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sapo_pipeline.config_utils import InputError

BOM = b"\xef\xbb\xbf"


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


class LineSource:
    """The file's bytes: read on demand for plain files, decompressed in memory for gzip.

    Plain files are never loaded whole: polars reads the path itself, lines are counted in
    chunks, and only the rare candidate-line re-check maps the file (``mmap``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gz = is_gzip(path)
        self.data: bytes | None = None
        if self.gz:
            try:
                with gzip.open(path, "rb") as fh:
                    self.data = fh.read()
            except (EOFError, OSError, zlib.error) as exc:
                raise InputError(f"{path}: not a complete gzip file ({exc}); the file is "
                                 f"truncated or corrupt -- download or copy it again") from None

    def polars_input(self) -> Path | io.BytesIO:
        return io.BytesIO(self.data) if self.data is not None else self.path

    def lines(self) -> Iterator[bytes]:
        if self.data is not None:
            yield from io.BytesIO(self.data)
            return
        with self.path.open("rb") as fh:
            yield from fh

    def count_lines(self, size: int = 1 << 24) -> int:
        """Lines as polars and the line iterator see them: ``\\n``-terminated, last may be open."""
        if self.data is not None:
            count, last = self.data.count(b"\n"), self.data[-1:]
        else:
            count, last = 0, b""
            with self.path.open("rb") as fh:
                while chunk := fh.read(size):
                    count, last = count + chunk.count(b"\n"), chunk[-1:]
        return count + (last not in (b"", b"\n"))

    def fetch_lines(self, wanted: list[int]) -> dict[int, bytes]:
        """Raw bytes (without the newline) of the given 1-based lines."""
        if self.data is not None:
            return slice_lines(self.data, wanted)
        with self.path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return slice_lines(mm, wanted)


def slice_lines(
    buf: bytes | mmap.mmap, wanted: list[int], chunk: int = 1 << 24
) -> dict[int, bytes]:
    """Bytes of the given 1-based lines of ``buf`` (newline positions found with numpy)."""
    parts = []
    for start in range(0, len(buf), chunk):
        arr = np.frombuffer(buf, dtype=np.uint8, count=min(chunk, len(buf) - start), offset=start)
        parts.append(np.flatnonzero(arr == 10) + start)
        del arr
    ends = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    out = {}
    for line in wanted:
        start = 0 if line == 1 else int(ends[line - 2]) + 1
        stop = int(ends[line - 1]) if line - 1 < ends.size else len(buf)
        raw = bytes(buf[start:stop])
        out[line] = raw[3:] if line == 1 and raw.startswith(BOM) else raw
    return out
