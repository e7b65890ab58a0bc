"""Safe parsing of list-valued and scalar CSV cells (Python-literal or JSON strings).

List cells such as ``"[2685, 1489]"`` or ``"['B00006ICBU', 'B00006IF67']"`` are parsed with
``json.loads`` when they are valid JSON and with ``ast.literal_eval`` otherwise (literals only;
nothing is ever evaluated). A cell that does not parse, or whose elements have the wrong type,
raises :class:`CellError` carrying the reject reason and a detail.
"""

from __future__ import annotations

import ast
import json

from sapo_pipeline.data.readers._common import excerpt

#: Longest cell handed to ``ast.literal_eval`` (guards against pathological input).
MAX_CELL_CHARS = 1_000_000


class CellError(ValueError):
    """A cell that cannot be used: ``reason`` is the reject reason, the message its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _typename(value: object) -> str:
    return type(value).__name__


def _check(value: object, kind: str) -> object:
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "str":
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown cell kind {kind!r}")
    raise CellError("wrong_type", f"expected {kind}, got {_typename(value)}: {excerpt(value)}")


def parse_list(cell: str, kind: str) -> list:
    """Parse a list cell whose elements must all be of ``kind`` ("int", "float" or "str")."""
    text = cell.strip()
    try:
        value = json.loads(text)
    except ValueError:
        if len(text) > MAX_CELL_CHARS:
            raise CellError("malformed_list", f"cell of {len(text)} characters is too long") from None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise CellError(
                "malformed_list", f"not a list literal ({type(exc).__name__}): {excerpt(cell)}"
            ) from None
    if not isinstance(value, list | tuple):
        raise CellError(
            "malformed_list", f"expected a list, got {_typename(value)}: {excerpt(cell)}"
        )
    try:
        return [_check(v, kind) for v in value]
    except CellError as exc:
        raise CellError("wrong_type", f"list element {exc}") from None


def parse_scalar(cell: str, kind: str) -> object:
    """Parse a scalar cell as ``kind`` ("int", "float" or "str"); blank -> CellError."""
    text = cell.strip()
    if not text:
        raise CellError("missing_field", "empty cell")
    if kind == "str":
        return text
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise CellError("wrong_type", f"expected {kind}, got {excerpt(cell)}") from None


def parse_text_list(text: str) -> tuple[list[str], bool]:
    """Parse a stringified list of strings leniently; return (items, parsed_exactly).

    The MiniOneRec ``item.json`` descriptions are ``str(list)`` renderings that are sometimes
    not valid literals (quotes inside items were not escaped). When ``literal_eval`` fails and
    the text looks like ``['a', 'b']``, it is split on the ``', '`` separator instead;
    otherwise the whole text is one item. Blank items are dropped.
    """
    stripped = text.strip()
    if not stripped or stripped == "[]":
        return [], True
    exact = True
    try:
        value = ast.literal_eval(stripped) if len(stripped) <= MAX_CELL_CHARS else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        exact = False
        if stripped[:2] in ("['", '["') and stripped[-2:] in ("']", '"]'):
            inner = stripped[2:-2]
            items = [p for chunk in inner.split("', '") for p in chunk.split('", "')]
        else:
            items = [stripped]
    return [s.strip() for s in items if s.strip()], exact
