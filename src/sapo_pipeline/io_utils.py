"""Atomic writes of files and directories, and file hashes (no Kedro: library code and datasets
both use these).

A reader sees the old version or the new one, never a torn one: the new content is written
beside the target under a temporary name, then ``os.replace``-d into place.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; these are ordinary data files
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_chunks_atomically(target: Path, chunks: Iterable[bytes]) -> dict[str, Any]:
    """Stream ``chunks`` to ``target`` through :func:`atomic_path` (fsync-ed before the rename);
    returns what was written: ``bytes``, ``sha256`` and ``lines`` (newline count)."""
    digest = hashlib.sha256()
    size = lines = 0
    with atomic_path(Path(target)) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"bytes": size, "sha256": digest.hexdigest(), "lines": lines}


def write_text_atomically(target: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` through :func:`atomic_path`."""
    with atomic_path(Path(target)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_directory_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling directory with ``write(tmp)``, then rename it into place.

    An existing ``target`` is first renamed aside and removed only once the new one is in;
    leftovers of interrupted earlier writes are cleaned up (never the only previous copy).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for stale in target.parent.glob(pattern):
            if pattern.endswith("old-*") and not target.exists():
                continue  # the only copy of the previous version: keep it
            logger.warning("removing leftover of an interrupted save: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
    tag = uuid.uuid4().hex[:12]
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    try:
        tmp.mkdir()
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{tag}"
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Log rows as CSV text: ``columns`` (default: every key, in order of first appearance),
    floats with 8 significant digits, an empty cell for None and non-finite values."""
    if columns is None:
        seen: list[str] = []
        for row in rows:
            seen += [k for k in row if k not in seen]
        columns = seen
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    return buf.getvalue()


def csv_to_rows(text: str, int_columns: Collection[str] = ()) -> list[dict[str, Any]]:
    """Inverse of :func:`rows_to_csv`: empty cells -> None, ``int_columns`` -> int, other
    numbers -> float, anything else kept as text."""
    rows = []
    for rec in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {}
        for k, v in rec.items():
            if v in ("", None):
                row[k] = None
            elif k in int_columns:
                row[k] = int(float(v))
            else:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        rows.append(row)
    return rows


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return v
