"""Row parsing for the MiniOneRec / D3 (ReRe) split CSVs.

Two column sets exist. ``minionerec``: user_id, history_item_title, item_title,
history_item_id, item_id, history_item_sid, item_sid. ``d3_rere``: user_id, item_asins,
item_asin, history_item_id, item_id, history_item_title, item_title, history_rating, rating,
history_timestamp, timestamp. Each data row becomes a :class:`SplitRow` or a reject
(``file, line, field, reason, detail``); ``line`` is the physical 1-based line where the record
starts (the header is line 1).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._cells import CellError, parse_list, parse_scalar

BASE_COLUMNS = ("user_id", "history_item_title", "item_title", "history_item_id", "item_id")
D3_COLUMNS = (
    "item_asins",
    "item_asin",
    "history_rating",
    "rating",
    "history_timestamp",
    "timestamp",
)
_EXPECTED = (
    f"a MiniOneRec/D3 split CSV with a header holding at least {list(BASE_COLUMNS)} "
    f"(D3/ReRe files also {list(D3_COLUMNS)})"
)


@dataclass
class SplitRow:
    """One parsed sample row."""

    index: int  # 0-based data-row index (for row alignment with a companion file)
    line: int  # physical 1-based line of the record
    user_id: str
    history: list[int]  # source item ids, oldest first
    target: int
    history_titles_raw: str
    target_title_raw: str
    history_asins: list[str] | None = None
    target_asin: str | None = None
    history_ts: list[int] | None = None
    target_ts: int | None = None
    history_rating: list[float] | None = None
    target_rating: float | None = None


@dataclass
class SplitFile:
    """A parsed split CSV."""

    label: str
    split: str
    has_d3_columns: bool
    rows: list[SplitRow]
    rejects: list[tuple]
    n_rows: int


def _check_utf8(row: list[str]) -> int | None:
    for i, cell in enumerate(row):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return i
    return None


def _parse_row(index: int, line: int, cells: dict[str, str], d3: bool) -> SplitRow:
    def get(name: str, fn, kind: str):
        try:
            return fn(cells[name], kind)
        except CellError as exc:
            exc.field = name  # type: ignore[attr-defined]
            raise

    row = SplitRow(
        index=index,
        line=line,
        user_id=get("user_id", parse_scalar, "str"),
        history=get("history_item_id", parse_list, "int"),
        target=get("item_id", parse_scalar, "int"),
        history_titles_raw=cells["history_item_title"],
        target_title_raw=cells["item_title"],
    )
    if d3:
        row.history_asins = get("item_asins", parse_list, "str")
        row.target_asin = get("item_asin", parse_scalar, "str")
        row.history_rating = get("history_rating", parse_list, "float")
        row.target_rating = get("rating", parse_scalar, "float")
        row.history_ts = get("history_timestamp", parse_list, "int")
        row.target_ts = get("timestamp", parse_scalar, "int")
        for name, values in (
            ("item_asins", row.history_asins),
            ("history_rating", row.history_rating),
            ("history_timestamp", row.history_ts),
        ):
            if len(values) != len(row.history):
                err = CellError(
                    "length_mismatch", f"{len(values)} values for {len(row.history)} history items"
                )
                err.field = name  # type: ignore[attr-defined]
                raise err
    return row


def read_split_csv(path: Path, label: str, split: str) -> SplitFile:
    """Parse one split CSV; bad rows become rejects. Errors on a wrong header or no good row."""
    csv.field_size_limit(sys.maxsize)
    rows: list[SplitRow] = []
    rejects: list[tuple] = []
    n = 0
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file; expected {_EXPECTED}") from None
        missing = [c for c in BASE_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path}: header {header[:12]} lacks {missing}; expected {_EXPECTED}")
        d3 = any(c in header for c in D3_COLUMNS)
        if d3 and (lack := [c for c in D3_COLUMNS if c not in header]):
            raise InputError(
                f"{path}: D3/ReRe columns incomplete, missing {lack}; expected {_EXPECTED}"
            )
        prev_end = reader.line_num
        for index, record in enumerate(reader):
            line, prev_end, n = prev_end + 1, reader.line_num, index + 1
            if not record or all(not c.strip() for c in record):
                rejects.append((label, line, None, "blank_line", "empty row"))
                continue
            if (bad := _check_utf8(record)) is not None:
                col = header[bad] if bad < len(header) else None
                rejects.append(
                    (label, line, col, "non_utf8", "cell holds bytes that are not UTF-8")
                )
                continue
            if len(record) != len(header):
                rejects.append(
                    (
                        label,
                        line,
                        None,
                        "malformed_row",
                        f"{len(record)} fields, the header has {len(header)}",
                    )
                )
                continue
            try:
                rows.append(_parse_row(index, line, dict(zip(header, record, strict=True)), d3))
            except CellError as exc:
                rejects.append((label, line, getattr(exc, "field", None), exc.reason, str(exc)))
    if not rows:
        first = f"; first problem: line {rejects[0][1]} {rejects[0][3]}" if rejects else ""
        raise InputError(f"{path}: no row could be read as {_EXPECTED}{first}")
    return SplitFile(
        label=label, split=split, has_d3_columns=d3, rows=rows, rejects=rejects, n_rows=n
    )
