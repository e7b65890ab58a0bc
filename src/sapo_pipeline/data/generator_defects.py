"""Deterministic defect injection for the synthetic JSONL files (used when defect_rate > 0).

Review-file kinds (names match ``schema.REJECT_REASONS``), split evenly over
``round(defect_rate * n_reviews)`` lines:

* ``malformed_json``: the line is cut short (a strict prefix of a JSON object never parses);
* ``missing_field``: one of user_id / parent_asin / timestamp is dropped;
* ``wrong_type``: timestamp becomes a word ("yesterday") or rating a word ("five");
* ``non_utf8``: bytes 0xFF 0xFE are put inside the review text (the rest is valid JSON);
* ``duplicate_review``: an exact copy of a clean line is inserted somewhere after it, so a
  reader keeps the first and rejects the copy.

Meta file: ``empty_title`` on ``round(defect_rate * n_items)`` lines.
Corrupted lines and duplicated lines are distinct, so every defective line has one reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

REVIEW_KINDS = ("malformed_json", "missing_field", "wrong_type", "non_utf8", "duplicate_review")
CLEAN, MALFORMED, MISSING, WRONG_TYPE, NON_UTF8, DUPLICATE = range(6)
MISSING_FIELDS = ("user_id", "parent_asin", "timestamp")
WRONG_TYPE_FIELDS = ("timestamp", "rating")
_TS_WORDS = ("yesterday", "unknown", "last week", "recently")
_RATING_WORDS = ("five", "four", "three", "good")


@dataclass
class DefectPlan:
    """Which output line gets which defect. Positions are 0-based lines of the written file."""

    n_reviews: int  # clean reviews (before inserting duplicates)
    pre_index: np.ndarray  # (n_reviews + n_dup,) output line -> index into the shuffled reviews
    review_kinds: np.ndarray  # (n_reviews + n_dup,) int8 kind code per output line
    review_field: list[str | None]  # per output line: the field a defect touched
    meta_empty_title: np.ndarray  # meta output lines with an empty title

    def review_sources(self, order: np.ndarray) -> np.ndarray:
        """Clean-row index for each output line, given the shuffle ``order`` of clean rows."""
        return order[self.pre_index]

    def manifest(self) -> dict:
        """The manifest's ``defects``, ``defect_fields`` and ``defect_lines`` entries."""
        lines = {k: (np.flatnonzero(self.review_kinds == code) + 1).tolist()
                 for code, k in enumerate(REVIEW_KINDS, start=1)}
        by_field = {"missing_field": dict.fromkeys(MISSING_FIELDS, 0),
                    "wrong_type": dict.fromkeys(WRONG_TYPE_FIELDS, 0)}
        for code, name in ((MISSING, "missing_field"), (WRONG_TYPE, "wrong_type")):
            for pos in np.flatnonzero(self.review_kinds == code).tolist():
                by_field[name][self.review_field[pos]] += 1
        meta_lines = (np.sort(self.meta_empty_title) + 1).tolist()
        return {
            "defects": {"reviews": {k: len(v) for k, v in lines.items()},
                        "meta": {"empty_title": len(meta_lines)}},
            "defect_fields": by_field,
            "defect_lines": {"reviews": lines, "meta": {"empty_title": meta_lines}},
        }


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_defects(rate: float, n_reviews: int, n_items: int,
                 rng: np.random.Generator) -> DefectPlan:
    """Choose defective lines; with ``rate == 0`` the plan is the identity with no defects."""
    counts = _split(round(rate * n_reviews), len(REVIEW_KINDS))
    n_corrupt, n_dup = sum(counts[:-1]), counts[-1]
    kinds = np.zeros(n_reviews, dtype=np.int8)
    fields: list[str | None] = [None] * n_reviews
    picked = rng.choice(n_reviews, size=n_corrupt + n_dup, replace=False)
    corrupt, dup_src = picked[:n_corrupt], np.sort(picked[n_corrupt:])
    kinds[corrupt] = np.repeat(np.arange(1, 5, dtype=np.int8), counts[:-1])
    field_pick = rng.random(n_corrupt)
    for pos, kind, r in zip(corrupt.tolist(), kinds[corrupt].tolist(), field_pick.tolist()):
        if kind == MISSING:
            fields[pos] = MISSING_FIELDS[int(r * len(MISSING_FIELDS))]
        elif kind == WRONG_TYPE:
            fields[pos] = WRONG_TYPE_FIELDS[int(r * len(WRONG_TYPE_FIELDS))]

    # Each copy goes right before a line q in (source, n_reviews], i.e. strictly after its source.
    q = dup_src + 1 + np.floor(rng.random(n_dup) * (n_reviews - dup_src)).astype(np.int64)
    keys = np.concatenate([np.arange(n_reviews, dtype=np.float64), q - 0.5])
    layout = np.argsort(keys, kind="stable")
    is_copy = layout >= n_reviews
    pre_index = np.where(is_copy, np.concatenate([np.arange(n_reviews), dup_src])[layout], layout)
    out_kinds = np.where(is_copy, DUPLICATE, kinds[np.minimum(layout, n_reviews - 1)])
    out_fields = [None if c else fields[i] for i, c in zip(layout.tolist(), is_copy.tolist())]

    n_empty = round(rate * n_items)
    empty = np.sort(rng.choice(n_items, size=n_empty, replace=False))
    return DefectPlan(n_reviews, pre_index, out_kinds.astype(np.int8), out_fields, empty)


def apply_review_defect(rec: dict, kind: int, field: str | None, pos: int) -> bytes:
    """The bytes of one defective review line (``rec`` is the clean record, modified here)."""
    if kind == DUPLICATE:
        return json.dumps(rec).encode("utf-8")
    if kind == MALFORMED:
        line = json.dumps(rec)
        cut = 10 + (pos * 7919) % max(1, len(line) - 11)
        return line[:cut].encode("utf-8")
    if kind == MISSING:
        del rec[field]
        return json.dumps(rec).encode("utf-8")
    if kind == WRONG_TYPE:
        words = _TS_WORDS if field == "timestamp" else _RATING_WORDS
        rec[field] = words[pos % len(words)]
        return json.dumps(rec).encode("utf-8")
    if kind == NON_UTF8:
        line = json.dumps(rec).encode("utf-8")
        return line.replace(b'"text": "', b'"text": "\xff\xfe', 1)
    raise ValueError(f"unknown defect kind code {kind}")
