"""The teacher interface: item descriptions, user narratives and step-aligned reasoning.

A teacher writes three kinds of text:

* ``describe_item(item)``: a short description of one catalog item;
* ``narrate_user(history)``: a short narrative of a user's interests from their history;
* ``reason_steps(history, target, codes, hierarchy)``: K thinking blocks, block k reasoning from
  the history toward the target's level-k SID prefix (what ``hierarchy[k-1]`` stands for), the
  last block toward the item itself. Blocks never spell SID tokens; the corpus builder places
  the tokens (:mod:`sapo_pipeline.teacher.layout`).

The batch methods (``describe_items``, ``narrate_users``, ``reason_steps_batch``) are what the
corpus builders call, so remote backends can run requests concurrently. They return one
:class:`Outcome` per input, in input order: either a value or the reason it was rejected. Every
rejection is counted in :attr:`Teacher.stats`; a rejected response is never used.
"""

from __future__ import annotations

import html
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.teacher.hierarchy import PrefixSummary

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_SPACES = re.compile(r"\s+")


def plain_text(value: object) -> str:
    """Catalog text as plain one-line text: HTML comments / tags and entities removed."""
    if value is None:
        return ""
    text = _HTML_TAG.sub(" ", _HTML_COMMENT.sub(" ", str(value)))
    return _SPACES.sub(" ", html.unescape(text)).strip()


#: Kinds of teacher request (the keys of the rejection counts).
KINDS = ("describe_item", "narrate_user", "reason_steps")


@dataclass(frozen=True)
class ItemInfo:
    """The catalog fields a teacher may read about an item."""

    item_id: int
    title: str = ""
    brand: str = ""
    categories: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ItemInfo:
        """From an ``items`` table row (nulls become empty)."""
        cats = tuple(plain_text(c) for c in (row.get("categories") or []) if plain_text(c))
        return cls(
            item_id=int(row["item_id"]),
            title=plain_text(row.get("title")),
            brand=plain_text(row.get("brand")),
            categories=cats,
            description=plain_text(row.get("description")),
        )

    @property
    def broad_category(self) -> str:
        """Second path element when the path has a root, else the first ('' when none)."""
        if len(self.categories) >= 2:
            return self.categories[1]
        return self.categories[0] if self.categories else ""

    @property
    def fine_category(self) -> str:
        return self.categories[-1] if self.categories else ""


@dataclass(frozen=True)
class ReasoningRequest:
    """One (history -> target) sample to explain, step by step."""

    key: int  # sample_id: seeds the rule teacher's phrasing
    history: tuple[ItemInfo, ...]
    target: ItemInfo
    codes: tuple[int, ...]  # target SID
    hierarchy: tuple[PrefixSummary, ...]  # target's prefixes of length 1..K-1
    history_codes: tuple[tuple[int, ...], ...] = ()  # SIDs of the history items (optional)
    history_hierarchy: tuple[tuple[PrefixSummary, ...], ...] = ()  # their prefixes (optional)

    def __post_init__(self) -> None:
        if len(self.hierarchy) != len(self.codes) - 1:
            raise ValueError(
                f"ReasoningRequest {self.key}: {len(self.hierarchy)} prefix summaries for a "
                f"{len(self.codes)}-level SID (need {len(self.codes) - 1})"
            )
        if self.history_codes and len(self.history_codes) != len(self.history):
            raise ValueError(f"ReasoningRequest {self.key}: history_codes / history mismatch")
        if self.history_hierarchy and len(self.history_hierarchy) != len(self.history):
            raise ValueError(f"ReasoningRequest {self.key}: history_hierarchy / history mismatch")


@dataclass(frozen=True)
class Outcome:
    """A teacher's answer to one request: ``value`` (str or list of blocks) or ``error``."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class TeacherError(RuntimeError):
    """A single-request call was rejected; ``reason`` is the short rejection reason."""

    def __init__(self, kind: str, reason: str):
        super().__init__(f"teacher {kind} request rejected: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass
class TeacherStats:
    """Counts a teacher keeps while it works (thread-safe increments)."""

    calls: Counter = field(default_factory=Counter)  # logical requests per kind
    accepted: Counter = field(default_factory=Counter)
    rejected: dict[str, Counter] = field(default_factory=dict)  # kind -> reason -> n
    notes: Counter = field(default_factory=Counter)  # e.g. truncated responses
    requests_made: int = 0  # transport attempts (retries included); 0 for the rule teacher
    retries: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reject(self, kind: str, reason: str) -> None:
        with self._lock:
            self.rejected.setdefault(kind, Counter())[reason] += 1

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def note(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.notes[what] += n

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "accepted": dict(self.accepted),
                "rejected": {k: dict(v) for k, v in self.rejected.items()},
                "rejected_total": sum(sum(v.values()) for v in self.rejected.values()),
                "notes": dict(self.notes),
                "requests_made": self.requests_made,
                "retries": self.retries,
                "cache_hits": self.cache_hits,
                "cache_misses": self.cache_misses,
            }


class Teacher(ABC):
    """Base class of every teacher backend."""

    backend: str = "abstract"

    def __init__(self, model: str = ""):
        self.model = model
        self.stats = TeacherStats()

    # -- batch API (what the corpus builders call) -------------------------------------------
    @abstractmethod
    def describe_items(self, items: Sequence[ItemInfo]) -> list[Outcome]:
        """One description per item (Outcome.value: str)."""

    @abstractmethod
    def narrate_users(self, histories: Sequence[Sequence[ItemInfo]]) -> list[Outcome]:
        """One narrative per history (Outcome.value: str)."""

    @abstractmethod
    def reason_steps_batch(self, requests: Sequence[ReasoningRequest]) -> list[Outcome]:
        """K blocks per request (Outcome.value: list[str], valid block texts)."""

    # -- single-request API -----------------------------------------------------------------
    def describe_item(self, item: ItemInfo) -> str:
        return _single("describe_item", self.describe_items([item])[0])

    def narrate_user(self, history: Sequence[ItemInfo]) -> str:
        return _single("narrate_user", self.narrate_users([history])[0])

    def reason_steps(self, history: Sequence[ItemInfo], target: ItemInfo, codes: Sequence[int],
                     hierarchy: Sequence[PrefixSummary], key: int = 0) -> list[str]:
        req = ReasoningRequest(key=key, history=tuple(history), target=target,
                               codes=tuple(int(c) for c in codes), hierarchy=tuple(hierarchy))
        return _single("reason_steps", self.reason_steps_batch([req])[0])

    # -- helpers -------------------------------------------------------------------------------
    def _count(self, kind: str, outcomes: list[Outcome]) -> list[Outcome]:
        """Record calls / accepted / rejected for a finished batch; returns ``outcomes``."""
        with self.stats._lock:
            self.stats.calls[kind] += len(outcomes)
            self.stats.accepted[kind] += sum(o.ok for o in outcomes)
            for o in outcomes:
                if not o.ok:
                    self.stats.rejected.setdefault(kind, Counter())[o.error] += 1
        return outcomes

    def describe(self) -> dict[str, Any]:
        """Backend and model, for reports (never credentials)."""
        return {"backend": self.backend, "model": self.model}

    def close(self) -> None:
        """Release resources (HTTP pools, models, cache connections)."""


def _single(kind: str, outcome: Outcome) -> Any:
    if not outcome.ok:
        raise TeacherError(kind, outcome.error or "unknown")
    return outcome.value
