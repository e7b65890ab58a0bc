"""Line-level reading of the small tab-separated files of the RecBole / LC-Rec releases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._common import excerpt


@dataclass
class TsvFile:
    """Parsed data lines ``(line, fields)`` plus rejects; ``n_rows`` excludes the header."""

    label: str
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    rejects: list[tuple] = field(default_factory=list)
    n_rows: int = 0
    header: list[str] | None = None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def read_tsv(
    path: Path,
    label: str,
    n_fields: int,
    *,
    header: bool,
    expected: str,
    min_fields: int | None = None,
) -> TsvFile:
    """Split each line on tabs; lines with a wrong field count, bad bytes or blank are rejects.

    With ``header`` the first line is the header and must have ``n_fields`` columns. Lines may
    have between ``min_fields`` (default ``n_fields``) and ``n_fields`` fields; missing trailing
    fields read as "". Raises ``ValueError`` when no data line is usable.
    """
    out = TsvFile(label=label)
    low = n_fields if min_fields is None else min_fields
    for line, raw in _lines(path):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            if header and line == 1:
                raise InputError(f"{path}: header is not UTF-8; expected {expected}") from None
            out.n_rows += 1
            out.rejects.append((label, line, None, "non_utf8", excerpt(raw)))
            continue
        if header and line == 1:
            out.header = text.split("\t")
            if len(out.header) != n_fields:
                raise InputError(
                    f"{path}: header {excerpt(text)} has {len(out.header)} columns; "
                    f"expected {expected}"
                )
            continue
        out.n_rows += 1
        if not text.strip():
            out.rejects.append((label, line, None, "blank_line", "empty line"))
            continue
        fields = text.split("\t")
        if not low <= len(fields) <= n_fields:
            out.rejects.append(
                (
                    label,
                    line,
                    None,
                    "malformed_row",
                    (f"{len(fields)} tab-separated fields, expected {n_fields}: {excerpt(text)}"),
                )
            )
            continue
        out.rows.append((line, fields + [""] * (n_fields - len(fields))))
    if not out.rows:
        first = (
            f"; first problem: line {out.rejects[0][1]} {out.rejects[0][3]}" if out.rejects else ""
        )
        raise InputError(f"{path}: no line could be read as {expected}{first}")
    return out


def read_id_map(path: Path, label: str, what: str) -> tuple[dict[int, str], TsvFile]:
    """Read ``key<TAB>integer id`` lines (no header) into {id: key}; bad/duplicate lines rejected."""
    tsv = read_tsv(path, label, 2, header=False, expected=f"{what} lines 'key<TAB>integer id'")
    out: dict[int, str] = {}
    seen: dict[str, int] = {}
    for line, (key, idx) in tsv.rows:
        try:
            i = int(idx)
        except ValueError:
            tsv.rejects.append(
                (label, line, "id", "wrong_type", (f"id {excerpt(idx)} is not an integer"))
            )
            continue
        key = key.strip()
        if not key:
            tsv.rejects.append((label, line, "key", "missing_field", "empty key"))
        elif i in out or key in seen:
            tsv.rejects.append(
                (
                    label,
                    line,
                    "id",
                    "duplicate_id",
                    f"{key}\t{i} repeats an id or key already mapped; kept the first",
                )
            )
        else:
            out[i] = key
            seen[key] = i
    return out, tsv
