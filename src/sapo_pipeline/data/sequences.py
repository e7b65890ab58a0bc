"""Users' chronological item sequences, rebuilt from the samples table, and their windows.

The all-position objectives (SASRec, the Stage-1 ``sid_sequence`` task, TIGER) train on each
user's chronological train sequence rather than on (history -> next) rows: one pass over the
sequences then covers every train transition once.

:func:`user_sequences` rebuilds them from ``samples`` (SAMPLE_SCHEMA), so it works for every
source, including the published MiniOneRec/D3 rows whose train split is rebuilt from prefixes:
a user's samples of one split, in ``sample_id`` order, are chained while each history is the
suffix of the sequence built so far (the normal case: consecutive sliding windows); a sample that
does not continue it starts a new segment, so no transition is invented or lost. The returned
:class:`Sequences` says how many transitions it holds, which equals the split's sample count.

:func:`windows` cuts sequences into chunks of at most ``length`` items, ``stride`` apart, so
that every transition is the target of exactly one chunk position; the chunk's earlier items are
its context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl


@dataclass
class Sequences:
    """Item-id sequences (oldest first), their users, and the number of transitions."""

    items: list[list[int]]
    users: list[str]

    @property
    def transitions(self) -> int:
        return sum(max(len(s) - 1, 0) for s in self.items)

    def __len__(self) -> int:
        return len(self.items)


def user_sequences(samples: pl.DataFrame, split: str = "train") -> Sequences:
    """Every user's chronological sequences of ``split`` (see the module docstring).

    Raises ``ValueError`` naming the missing column, or when ``split`` has no rows.
    """
    missing = [c for c in ("sample_id", "user_id", "history", "target", "split")
               if c not in samples.columns]
    if missing:
        raise ValueError(f"samples: missing columns {missing}")
    rows = samples.filter(pl.col("split") == split).sort("user_id", "sample_id")
    if rows.height == 0:
        raise ValueError(f"samples: no rows in split {split!r}")
    out: list[list[int]] = []
    users: list[str] = []
    current: list[int] = []
    user: str | None = None
    for u, history, target in zip(rows["user_id"], rows["history"], rows["target"]):
        hist = [int(i) for i in history]
        continues = (u == user and current and len(hist) <= len(current)
                     and current[len(current) - len(hist):] == hist)
        if not continues:
            if current:
                out.append(current)
                users.append(user)
            current, user = hist, u
        current = [*current, int(target)]
    if current:
        out.append(current)
        users.append(user)
    return Sequences(out, users)


def windows(sequences: Sequence[Sequence[int]], length: int, stride: int | None = None
            ) -> list[tuple[list[int], int]]:
    """Chunks ``(items, first_label)`` of at most ``length`` items, ``stride`` apart.

    ``items[first_label:]`` are the chunk's targets (each predicted from the items before it in
    the chunk); every transition of a sequence is the target of exactly one chunk. The default
    stride ``length - 1`` overlaps chunks by one item (``first_label`` is then always 1); a
    smaller stride gives later targets more context at the cost of more tokens. Sequences of
    fewer than two items hold no transition and give no chunk.
    """
    if length < 2:
        raise ValueError(f"windows: length must be >= 2, got {length}")
    stride = length - 1 if stride is None else stride
    if not 1 <= stride <= length - 1:
        raise ValueError(f"windows: stride must be in [1, length - 1], got {stride}")
    out = []
    for seq in sequences:
        seq = list(seq)
        start, labelled = 0, 1  # labelled: index of the first transition not yet a target
        while labelled < len(seq):
            chunk = seq[start:start + length]
            out.append((chunk, labelled - start))
            labelled = start + len(chunk)
            start += stride
        # the loop ends once the last item was a target
    return out
