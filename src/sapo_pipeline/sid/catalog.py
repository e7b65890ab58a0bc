"""SID spelling, the item -> SID table, and the prefix trie used for constrained decoding.

A SID is a tuple of integer codes, one per level, spelled ``<a_12><b_7><c_201>``: the level
letter (``a`` for the first level, ``b`` for the second, ...) and the code index from 0.

:class:`SIDTrie` answers "which codes may follow this prefix?" in O(1) per call (a dict from the
prefix tuple to a precomputed sorted array). An unknown prefix raises ``KeyError``: the trie never
falls back to "anything allowed" (a defect of the public reference code, METHOD.md §6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

LEVEL_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_TOKEN_RE = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")


def level_letter(level: int) -> str:
    """The letter spelling level ``level`` (0 -> ``a``)."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level must be in [0, {len(LEVEL_LETTERS)}), got {level}")
    return LEVEL_LETTERS[level]


def sid_token(level: int, code: int) -> str:
    """One SID token, e.g. ``sid_token(1, 7) == "<b_7>"``."""
    if code < 0:
        raise ValueError(f"code must be >= 0, got {code} at level {level}")
    return f"<{level_letter(level)}_{int(code)}>"


def is_sid_token(text: str) -> bool:
    """Whether ``text`` is one SID token such as ``<b_7>``."""
    return _TOKEN_RE.fullmatch(text) is not None


def format_sid(codes: Sequence[int] | np.ndarray) -> str:
    """Spell a SID: ``format_sid((12, 7, 201)) == "<a_12><b_7><c_201>"``."""
    codes = [int(c) for c in codes]
    if not codes:
        raise ValueError("format_sid: empty code sequence")
    return "".join(sid_token(level, c) for level, c in enumerate(codes))


def parse_sid(sid: str) -> tuple[int, ...]:
    """Parse ``"<a_12><b_7><c_201>"`` into ``(12, 7, 201)``.

    Raises ``ValueError`` naming the string and the offending position when the string is not a
    canonical SID: tokens must be contiguous, levels must run a, b, c, ... in order, and codes
    are non-negative integers without leading zeros (so ``format_sid(parse_sid(s)) == s``).
    """
    if not isinstance(sid, str):
        raise TypeError(f"parse_sid expects a str, got {type(sid).__name__}: {sid!r}")
    if not sid:
        raise ValueError("parse_sid: empty string is not a SID")
    codes: list[int] = []
    pos = 0
    while pos < len(sid):
        m = _TOKEN_RE.match(sid, pos)
        if m is None:
            raise ValueError(
                f"parse_sid: malformed SID {sid!r} at character {pos}: expected a token like "
                f"'<{level_letter(min(len(codes), 25))}_0>', found {sid[pos : pos + 12]!r}"
            )
        letter, code = m.group(1), int(m.group(2))
        expected = level_letter(len(codes)) if len(codes) < len(LEVEL_LETTERS) else "?"
        if letter != expected:
            raise ValueError(
                f"parse_sid: malformed SID {sid!r} at character {pos}: level {len(codes)} must "
                f"use letter {expected!r}, found {letter!r}"
            )
        codes.append(code)
        pos = m.end()
    return tuple(codes)


def sid_tokens(levels: int, codebook_size: int, extra_level_size: int | None = None) -> list[str]:
    """Every SID token, level by level: ``<a_0> .. <a_{C-1}>, <b_0> .. `` (for the tokenizer).

    ``extra_level_size`` adds a de-duplication level (letter after the last regular level) with
    that many codes, as produced by :func:`sapo_pipeline.sid.collisions.resolve_collisions`
    (its report's ``extra_level_size``). ``None`` or 0 adds nothing.
    """
    if levels < 1 or codebook_size < 1:
        raise ValueError(f"levels and codebook_size must be >= 1, got {levels}, {codebook_size}")
    tokens = [sid_token(level, c) for level in range(levels) for c in range(codebook_size)]
    if extra_level_size:
        tokens += [sid_token(levels, c) for c in range(int(extra_level_size))]
    return tokens


def _as_code_matrix(codes: Any, name: str = "codes") -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array [n_items, levels], got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, found {arr.min()}")
    return arr.astype(np.int64, copy=False)


def build_sid_table(item_ids: Sequence[int] | np.ndarray, codes: Any) -> pl.DataFrame:
    """Item -> SID table: ``item_id`` Int64, ``codes`` List[Int64], ``sid`` Utf8, ``code_0..``.

    Rows are sorted by ``item_id``. Item ids must be unique; SIDs need not be (so the table can
    also show a catalog before collision resolution); :class:`SIDTrie` requires them unique.
    """
    ids = np.asarray(item_ids, dtype=np.int64)
    mat = _as_code_matrix(codes)
    if ids.ndim != 1 or len(ids) != len(mat):
        raise ValueError(
            f"build_sid_table: {len(ids)} item ids but {len(mat)} code rows (shape {mat.shape})"
        )
    if len(np.unique(ids)) != len(ids):
        raise ValueError("build_sid_table: item_ids are not unique")
    order = np.argsort(ids, kind="stable")
    ids, mat = ids[order], mat[order]
    data: dict[str, Any] = {
        "item_id": pl.Series("item_id", ids, dtype=pl.Int64),
        "codes": pl.Series("codes", mat.tolist(), dtype=pl.List(pl.Int64)),
        "sid": pl.Series("sid", [format_sid(row) for row in mat], dtype=pl.Utf8),
    }
    for level in range(mat.shape[1]):
        data[f"code_{level}"] = pl.Series(f"code_{level}", mat[:, level], dtype=pl.Int64)
    return pl.DataFrame(data)


def _key(codes: Any) -> tuple[int, ...]:
    if isinstance(codes, str):
        return parse_sid(codes)
    return tuple(int(c) for c in codes)


class SIDTrie:
    """Prefix trie over a catalog's SIDs (all of one length, unique unless ``allow_shared``).

    ``allow_shared`` (the published MiniOneRec index, which has collisions): a SID shared by
    several items maps to the lowest of their ids; ``len`` counts SIDs.

    ``children(prefix)`` returns the sorted array of codes that may follow ``prefix`` (the empty
    tuple gives the allowed first-level codes; a complete SID gives an empty array). A prefix that
    is not a prefix of any catalog SID raises ``KeyError``.
    """

    def __init__(self, item_ids: Iterable[int], codes: Any, allow_shared: bool = False):
        ids = np.asarray(
            list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids, dtype=np.int64
        )
        mat = _as_code_matrix(codes)
        if len(ids) != len(mat):
            raise ValueError(f"SIDTrie: {len(ids)} item ids but {len(mat)} code rows")
        if len(mat) == 0:
            raise ValueError("SIDTrie: empty catalog")
        self.levels = int(mat.shape[1])
        self.allow_shared = bool(allow_shared)
        self._items: dict[tuple[int, ...], int] = {}
        for item, row in sorted(zip(ids.tolist(), mat.tolist())):
            key = tuple(row)
            if key in self._items and self.allow_shared:
                continue  # the lowest item id stands for the SID
            if key in self._items:
                raise ValueError(
                    f"SIDTrie: SID {format_sid(key)} is shared by items {self._items[key]} and "
                    f"{item}; resolve collisions first (sid.collisions.resolve_collisions)"
                )
            self._items[key] = item
        kids: dict[tuple[int, ...], set[int]] = {}
        for key in self._items:
            for depth in range(self.levels):
                kids.setdefault(key[:depth], set()).add(key[depth])
        empty = np.zeros(0, dtype=np.int64)
        empty.setflags(write=False)
        self._children: dict[tuple[int, ...], np.ndarray] = {}
        for prefix, codes_set in kids.items():
            arr = np.array(sorted(codes_set), dtype=np.int64)
            arr.setflags(write=False)
            self._children[prefix] = arr
        for key in self._items:
            self._children[key] = empty

    # -- queries -------------------------------------------------------------------------
    def children(self, prefix: Sequence[int] | np.ndarray | str = ()) -> np.ndarray:
        """Sorted (read-only) array of allowed next codes after ``prefix``; KeyError if unknown."""
        key = _key(prefix)
        try:
            return self._children[key]
        except KeyError:
            raise KeyError(
                f"SID prefix {key} ({format_sid(key) if key else '<empty>'}) is not a prefix of "
                f"any catalog item"
            ) from None

    def is_prefix(self, prefix: Sequence[int] | np.ndarray | str) -> bool:
        """True if ``prefix`` (length 0..levels) is a prefix of some catalog SID."""
        return _key(prefix) in self._children

    def item_of(self, codes: Sequence[int] | np.ndarray | str) -> int:
        """Item id of a complete SID; KeyError if it is not a catalog SID."""
        key = _key(codes)
        try:
            return self._items[key]
        except KeyError:
            raise KeyError(f"SID {key} is not a catalog item") from None

    def __contains__(self, codes: object) -> bool:
        try:
            return _key(codes) in self._items  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self._items)

    def sids(self) -> list[tuple[int, ...]]:
        """All complete SIDs, in item-id order."""
        return sorted(self._items, key=self._items.__getitem__)

    # -- (de)serialisation ---------------------------------------------------------------
    @classmethod
    def from_table(cls, table: pl.DataFrame) -> SIDTrie:
        """Build from a :func:`build_sid_table` frame (columns ``item_id`` and ``codes``); a
        ``shared_sid`` column (the published index's table) allows shared SIDs."""
        missing = [c for c in ("item_id", "codes") if c not in table.columns]
        if missing:
            raise ValueError(f"SIDTrie.from_table: missing columns {missing}")
        lengths = table["codes"].list.len().unique().to_list()
        if len(lengths) != 1:
            raise ValueError(f"SIDTrie.from_table: SIDs have different lengths {sorted(lengths)}")
        if table["codes"].list.eval(pl.element().is_null()).list.any().any():
            raise ValueError("SIDTrie.from_table: null code in column 'codes'")
        return cls(table["item_id"].to_numpy(), np.array(table["codes"].to_list(), dtype=np.int64),
                   allow_shared="shared_sid" in table.columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"levels": K, "items": [...], "codes": [[...], ...]}``."""
        order = sorted(self._items.items(), key=lambda kv: kv[1])
        out = {
            "levels": self.levels,
            "items": [item for _, item in order],
            "codes": [list(key) for key, _ in order],
        }
        if self.allow_shared:
            out["allow_shared"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SIDTrie:
        """Inverse of :meth:`to_dict`."""
        for k in ("levels", "items", "codes"):
            if k not in data:
                raise ValueError(f"SIDTrie.from_dict: missing key {k!r}")
        trie = cls(
            data["items"],
            np.array(data["codes"], dtype=np.int64).reshape(
                len(data["codes"]), int(data["levels"])
            ),
            allow_shared=bool(data.get("allow_shared", False)),
        )
        return trie
