"""A persistent cache of raw teacher responses (sqlite3), so re-runs and resumed runs are free.

The key is the sha256 of a canonical JSON of ``(backend, model, messages, generation
parameters)``; the value is the raw response text, stored before it is parsed (changing the
parser never costs a request; an unparsable response is cached too and counted as rejected on
every run). Each ``put`` commits, so an interrupted run keeps everything it had received.
Transport failures are never cached. Use the cache from one thread (the backends write from
the thread that collects results).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(backend: str, model: str, prompt: Any, params: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of everything that determines a response."""
    doc = {"backend": backend, "model": model, "prompt": prompt, "params": params}
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """Key -> raw response text in a sqlite file; counts hits and misses."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)
        self._conn.commit()
        self.hits = 0
        self.misses = 0
        log.info("teacher cache %s: %d stored responses", self.path, len(self))

    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0]

    def put(self, key: str, backend: str, model: str, response: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO responses (key, backend, model, response, created) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, backend, model, response, time.time()),
        )
        self._conn.commit()

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
