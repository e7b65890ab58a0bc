"""Shared JSON-lines core: a polars fast path for clean files, a checking slow path otherwise.

``read_jsonl(path, specs, expected=...)`` reads a plain or gzip-compressed JSON-lines file and
returns the declared fields as flat columns plus a ``line`` column (1-based line number), the
quarantined lines as reject rows (``REJECT_SCHEMA``) and the number of lines read, so that
``lines_read == frame.height + rejects.height`` always holds.

Fast path (clean files): one ``pl.read_ndjson`` call with an explicit schema holding only the
declared fields; no Python loop over lines. It is taken only when polars parses the whole
file, the row count equals the line count (polars skips blank lines silently, which would shift
line numbers) and no string value could be a stringified non-string (polars turns ``3``,
``true`` or ``[..]`` into ``"3"``, ``"true"``, ``"[..]"`` when the schema says string; such
candidate rows are re-checked one by one in Python). Rows missing a required field are
rejected with vectorised expressions.

Slow path (anything else): each line is decoded and checked in Python to give every bad line
its exact reason: ``non_utf8``, ``blank_line``, ``malformed_json`` (also a line that is not a
JSON object), ``wrong_type`` (first declared field, in spec order, whose JSON type is wrong),
then ``missing_field`` (first required field that is absent, null or blank after fallbacks).
The good lines become the frame. Both paths give the same frame for the same good lines.

A missing file raises ``FileNotFoundError``; a file where no line parses raises ``ValueError``.
Known divergence: for an object with a repeated key polars keeps the first value and Python's
``json`` the last; such files are not produced by any source we read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.data.readers._linesource import BOM, LineSource
from sapo_pipeline.data.readers.fieldspec import _STR_LIST, FieldSpec
from sapo_pipeline.data.schema import REJECT_SCHEMA

logger = logging.getLogger(__name__)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EXCERPT = 80


@dataclass
class JsonlResult:
    """What ``read_jsonl`` returns for one file."""

    frame: pl.DataFrame  # one column per spec (spec.name) + "line"
    rejects: pl.DataFrame  # REJECT_SCHEMA
    lines_read: int
    file: str
    fast_path: bool


def _validate_specs(specs: list[FieldSpec]) -> None:
    names = [s.name for s in specs]
    if len(set(names)) != len(names) or "line" in names:
        raise ValueError(f"FieldSpec names must be unique and not 'line': {names}")
    tops: dict[str, int] = {}
    for i, s in enumerate(specs):
        depth = len(s.path)
        if tops.setdefault(s.path[0], depth) != depth:
            raise ValueError(f"JSON key {s.path[0]!r} used both as a value and as an object")
        if s.fallback is not None and s.fallback not in names[:i]:
            raise ValueError(
                f"FieldSpec {s.name!r}: fallback {s.fallback!r} must name an earlier spec"
            )


def _polars_schema(specs: list[FieldSpec]) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {}
    nested: dict[str, dict[str, pl.DataType]] = {}
    for s in specs:
        if len(s.path) == 1:
            schema[s.path[0]] = s.dtype
        else:
            nested.setdefault(s.path[0], {})[s.path[1]] = s.dtype
            schema[s.path[0]] = pl.Struct(nested[s.path[0]])
    return schema


def _excerpt(raw: bytes | str) -> str:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")
    text = text.rstrip("\r\n")
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _jtype(value: object) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(type(value), type(value).__name__)


def _type_error(value: object, spec: FieldSpec) -> tuple[object, str | None]:
    """Return (normalised value, None) when ``value`` fits ``spec.dtype``, else (None, detail)."""
    dt = spec.dtype
    if dt == pl.Utf8:
        ok = isinstance(value, str)
    elif dt == pl.Int64:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and _INT64_MIN <= value <= _INT64_MAX  # type: ignore[operator]
    elif dt == pl.Float64:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif dt == pl.Boolean:
        ok = isinstance(value, bool)
    else:  # List(Utf8)
        if spec.scalar_ok and isinstance(value, str):
            return [value], None
        ok = isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
    if ok:
        return value, None
    want = "list of strings" if dt == _STR_LIST else str(dt)
    return None, f"expected {want}, got {_jtype(value)}: {_excerpt(json.dumps(value))}"


def check_object(obj: object, specs: list[FieldSpec]) -> tuple[list | None, tuple | None]:
    """Validate one decoded JSON value; return (values in spec order, None) or (None, reject).

    The reject is ``(field, reason, detail)``.
    """
    if not isinstance(obj, dict):
        return None, (None, "malformed_json", f"expected a JSON object, got {_jtype(obj)}")
    values: list = []
    for s in specs:
        value = obj.get(s.path[0])
        if len(s.path) == 2 and value is not None:
            if not isinstance(value, dict):
                return None, (s.path[0], "wrong_type", f"expected object, got {_jtype(value)}")
            value = value.get(s.path[1])
        if value is not None:
            value, detail = _type_error(value, s)
            if detail is not None:
                return None, (s.source, "wrong_type", detail)
        values.append(value)
    by_name = {s.name: i for i, s in enumerate(specs)}
    for i, s in enumerate(specs):
        if s.fallback is not None and _blank(values[i]):
            values[i] = values[by_name[s.fallback]]
        if s.required and _blank(values[i]):
            return None, (
                s.source,
                "missing_field",
                (f"required field {s.source!r} is absent, null or blank"),
            )
    return values, None


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_line(raw: bytes, specs: list[FieldSpec]) -> tuple[list | None, tuple | None]:
    """Decode and validate one raw line (without caring about its number)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (
            None,
            "non_utf8",
            (f"invalid byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}: {_excerpt(raw)}"),
        )
    if not text.strip():
        return None, (None, "blank_line", "empty or whitespace-only line")
    text = text.rstrip("\r\n")  # the line break is not part of the JSON (columns stay right)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return None, (
            None,
            "malformed_json",
            (f"{exc.msg} at column {exc.colno}: {_excerpt(text)}"),
        )
    except ValueError as exc:  # NaN / Infinity: Python's json accepts them, JSON does not
        return None, (None, "malformed_json", f"{exc}: {_excerpt(text)}")
    return check_object(obj, specs)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


# ----------------------------------------------------------------------------- paths


def _looks_stringified(expr: pl.Expr) -> pl.Expr:
    """True where a string may be polars' rendering of a JSON number, boolean, array or object."""
    return (
        expr.cast(pl.Float64, strict=False).is_not_null()
        | expr.is_in(["true", "false"])
        | expr.str.starts_with("[")
        | expr.str.starts_with("{")
    )


def _finish(df: pl.DataFrame, specs: list[FieldSpec]) -> pl.DataFrame:
    """Apply fallbacks (vectorised, same rule as ``check_object``)."""
    exprs = []
    for s in specs:
        if s.fallback is None:
            continue
        col = pl.col(s.name)
        blank = (
            col.is_null() | (col.str.strip_chars() == "") if s.dtype == pl.Utf8 else col.is_null()
        )
        exprs.append(pl.when(blank).then(pl.col(s.fallback)).otherwise(col).alias(s.name))
    return df.with_columns(exprs) if exprs else df


def _read_columnar(
    src: LineSource, specs: list[FieldSpec], n_lines: int, fname: str
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    try:
        raw = pl.read_ndjson(src.polars_input(), schema=_polars_schema(specs))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError, ValueError) as exc:
        logger.info(
            "%s: not clean for the fast path (%s); checking line by line",
            fname,
            str(exc).splitlines()[0][:120],
        )
        return None
    if raw.height != n_lines:
        logger.info(
            "%s: %d rows for %d lines (blank lines); checking line by line",
            fname,
            raw.height,
            n_lines,
        )
        return None
    cols = [
        (
            pl.col(s.path[0]) if len(s.path) == 1 else pl.col(s.path[0]).struct.field(s.path[1])
        ).alias(s.name)
        for s in specs
    ]
    df = (
        raw.select(cols)
        .with_row_index("line", offset=1)
        .select([s.name for s in specs] + [pl.col("line").cast(pl.Int64)])
    )
    suspects = [
        (
            _looks_stringified(pl.col(s.name))
            if s.dtype == pl.Utf8
            else pl.col(s.name).list.eval(_looks_stringified(pl.element())).list.any()
        )
        for s in specs
        if s.dtype in (pl.Utf8, _STR_LIST)
    ]
    if suspects:
        cand = df.filter(pl.any_horizontal(suspects).fill_null(False))["line"].to_list()
        for line, raw_line in (src.fetch_lines(cand) if cand else {}).items():
            if check_line(raw_line, specs)[1] is not None:
                logger.info("%s: line %d has a wrong type; checking line by line", fname, line)
                return None
    df = _finish(df, specs)
    bad = [
        pl.when(
            pl.col(s.name).is_null() | (pl.col(s.name).str.strip_chars() == "")
            if s.dtype == pl.Utf8
            else pl.col(s.name).is_null()
        ).then(pl.lit(s.source))
        for s in specs
        if s.required
    ]
    if not bad:
        return df, pl.DataFrame(schema=REJECT_SCHEMA)
    df = df.with_columns(pl.coalesce(bad).alias("_missing"))
    rejects = df.filter(pl.col("_missing").is_not_null()).select(
        pl.lit(fname).alias("file"),
        "line",
        pl.col("_missing").alias("field"),
        pl.lit("missing_field").alias("reason"),
        pl.format("required field '{}' is absent, null or blank", pl.col("_missing")).alias(
            "detail"
        ),
    )
    return df.filter(pl.col("_missing").is_null()).drop("_missing"), rejects


def _read_line_by_line(
    src: LineSource, specs: list[FieldSpec], fname: str
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    columns: list[list] = [[] for _ in specs]
    good_lines: list[int] = []
    rejects: list[tuple] = []
    n = 0
    for n, raw in enumerate(src.lines(), start=1):
        if n == 1 and raw.startswith(BOM):
            raw = raw[3:]
        values, bad = check_line(raw, specs)
        if bad is not None:
            rejects.append((fname, n, *bad))
            continue
        good_lines.append(n)
        for col, v in zip(columns, values, strict=True):
            col.append(v)
    data = {
        s.name: pl.Series(s.name, col, dtype=s.dtype) for s, col in zip(specs, columns, strict=True)
    }
    df = pl.DataFrame({**data, "line": pl.Series("line", good_lines, dtype=pl.Int64)})
    rej = pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")
    return df, rej, n


def read_jsonl(
    path: str | Path, specs: list[FieldSpec], *, expected: str, file: str | None = None
) -> JsonlResult:
    """Read a JSON-lines file (plain or gzip) into the declared fields; quarantine bad lines.

    ``expected`` names the format in error messages (e.g. "Amazon 2023 review JSON lines");
    ``file`` is the name used in reject rows (default: the file name).
    """
    path = Path(path)
    _validate_specs(specs)
    if not path.is_file():
        raise FileNotFoundError(f"{expected} file not found: {path}")
    fname = file or path.name
    src = LineSource(path)
    n_lines = src.count_lines()
    fast = _read_columnar(src, specs, n_lines, fname) if n_lines else None
    if fast is not None:
        df, rejects = fast
    else:
        df, rejects, n_lines = _read_line_by_line(src, specs, fname)  # fallbacks applied per line
    if df.height == 0:
        first = rejects.row(0, named=True) if rejects.height else None
        why = (
            f"first problem: line {first['line']} {first['reason']} ({first['detail']})"
            if first
            else "the file is empty"
        )
        raise InputError(f"{path}: no line could be read as {expected}; {why}")
    if rejects.height:
        counts = rejects.group_by("reason").len().sort("reason").rows()
        logger.warning(
            "%s: %d of %d lines rejected %s", fname, rejects.height, n_lines, dict(counts)
        )
    return JsonlResult(
        frame=df, rejects=rejects, lines_read=n_lines, file=fname, fast_path=fast is not None
    )
