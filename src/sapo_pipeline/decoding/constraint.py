"""The catalog trie as dense tensors, so constrained decoding is a gather, not a Python loop.

Every SID prefix of length ``0 .. K-1`` (a trie node) gets a global node id (the root is 0,
then the level-1 prefixes, ...). Per node, over the codes ``0 .. C_max-1`` of the next level:

* ``children_ok[node, code]``: the code is a child of the prefix (a catalog continuation);
* ``child_node[node, code]``: node id (int32) of the longer prefix (``-1`` for codes that are no
  child and for every code at the last level, whose children are complete SIDs, not nodes);
* ``n_children[node]``, ``first_child[node]`` (single-child nodes are forced choices).

``level_ids[k, code]`` is the token id of ``code`` at level ``k`` (``-1`` where there is none).
A child code without a token is an error when the index is built (the decoder would otherwise
have to skip a catalog item silently). Nothing here can say "anything goes": a row whose prefix is
not a node has no allowed SID token (the state machine raises before that can happen).

Memory is ``nodes x C_max x 5`` bytes: about 4 MB for 3,000 items with C=256 (a catalog of
hundreds of thousands of items would want a sparse layout instead).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.sid.catalog import SIDTrie, format_sid

_CACHE: weakref.WeakKeyDictionary[SIDTrie, list[tuple[Any, ConstraintIndex]]] = (
    weakref.WeakKeyDictionary()
)


class ConstraintIndex:
    """Dense trie tensors for one (catalog trie, SID vocab) pair; see the module docstring."""

    def __init__(self, trie: SIDTrie, vocab: SIDVocab) -> None:
        if trie.levels != vocab.levels:
            raise ValueError(f"ConstraintIndex: trie has {trie.levels} levels, vocab "
                             f"{vocab.levels}")
        self.levels = trie.levels
        self.cmax = vocab.max_codes
        level_ids = torch.full((self.levels, self.cmax), -1, dtype=torch.long)
        for k, ids in enumerate(vocab.level_ids):
            level_ids[k, : len(ids)] = ids
        self.level_ids = level_ids
        prefixes: list[tuple[int, ...]] = [()]
        node_level: list[int] = [0]
        rows: list[np.ndarray] = []
        frontier: list[tuple[int, ...]] = [()]
        for k in range(self.levels):
            nxt: list[tuple[int, ...]] = []
            for prefix in frontier:
                kids = trie.children(prefix)
                kid_t = torch.from_numpy(np.array(kids, dtype=np.int64))
                if len(kids) == 0:  # pragma: no cover - SIDTrie never has a dead end
                    raise ValueError(f"ConstraintIndex: prefix {prefix} has no children")
                if kids[-1] >= len(vocab.level_ids[k]) or (level_ids[k, kid_t] < 0).any():
                    missing = [c for c in kids.tolist()
                               if c >= len(vocab.level_ids[k]) or level_ids[k, c] < 0]
                    raise ValueError(
                        f"ConstraintIndex: catalog code(s) {missing[:10]} at level {k} (after "
                        f"prefix {format_sid(prefix) if prefix else '<empty>'}) have no token "
                        f"in the SID vocab")
                rows.append(kids)
                if k + 1 < self.levels:
                    nxt.extend((*prefix, int(c)) for c in kids)
            if k + 1 < self.levels:
                prefixes.extend(nxt)
                node_level.extend([k + 1] * len(nxt))
            frontier = nxt
        n = len(prefixes)
        ok = np.zeros((n, self.cmax), dtype=bool)
        child = np.full((n, self.cmax), -1, dtype=np.int32)
        next_id = 1
        for node, kids in enumerate(rows):
            ok[node, kids] = True
            if node_level[node] + 1 < self.levels:
                child[node, kids] = np.arange(next_id, next_id + len(kids), dtype=np.int32)
                next_id += len(kids)
        self.num_nodes = n
        self.children_ok = torch.from_numpy(ok)
        self.child_node = torch.from_numpy(child)
        self.n_children = self.children_ok.sum(1)
        self.first_child = self.children_ok.to(torch.int8).argmax(1)
        self.node_level = torch.tensor(node_level, dtype=torch.long)
        self._prefixes = prefixes
        self.num_items = len(trie)

    @classmethod
    def get(cls, trie: SIDTrie, vocab: SIDVocab) -> ConstraintIndex:
        """The index of ``(trie, vocab)``, built once and cached while the trie lives."""
        entries = _CACHE.setdefault(trie, [])
        for v, index in entries:
            if v is vocab:
                return index
        index = cls(trie, vocab)
        entries.append((vocab, index))
        return index

    def prefix_of(self, node: int) -> tuple[int, ...]:
        """The SID prefix of a node id."""
        return self._prefixes[node]

    def candidates(self, level: torch.Tensor, node: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: candidate token ids ``[n, C_max]`` (0 where none) and which are allowed."""
        ids = self.level_ids[level]
        ok = self.children_ok[node.clamp(min=0)] & (ids >= 0) & (node >= 0)[:, None]
        return ids.clamp(min=0), ok
