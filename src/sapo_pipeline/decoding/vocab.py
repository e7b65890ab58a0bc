"""Token ids of the SID codes and the structural markers, as the decoders need them.

:class:`SIDVocab` maps ``(level, code)`` to the token id of ``<a_12>``-style tokens and back,
holds per-level id arrays (``level_ids[k][code]``, ``-1`` where a code has no token), the ids of
``<think>``, ``</think>``, eos, pad (and bos when there is one), the tokenizer's other special
tokens, and the ids of *every* SID-like token of the tokenizer (all of these are banned inside a
thinking block, whatever their level).

Built once per tokenizer with :meth:`SIDVocab.from_tokenizer`; a code the catalog (or the given
codebook size) needs that is not exactly one token id is an error listing the offenders -- the
decoder never guesses a spelling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sapo_pipeline.sid.catalog import SIDTrie, sid_token
from sapo_pipeline.teacher.layout import THINK_CLOSE, THINK_OPEN

_SID_TOKEN = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")


def _single_id(tokenizer: Any, token: str, vocab: dict[str, int]) -> int | None:
    """The one id ``token`` encodes to (and decodes back from), else None."""
    if token not in vocab:
        return None
    ids = tokenizer.encode(token, add_special_tokens=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) != 1 or (unk is not None and ids[0] == unk):
        return None
    if tokenizer.convert_ids_to_tokens(ids[0]) != token:
        return None
    return int(ids[0])


def _level_sizes(levels: int | None, codebook_size: int | Sequence[int] | None,
                 table: Any) -> tuple[list[int], list[set[int]] | None]:
    """(codes per level, codes the catalog uses per level or None = every code required)."""
    if table is not None:
        if isinstance(table, SIDTrie):
            mat = np.array(table.sids(), dtype=np.int64).reshape(len(table), table.levels)
        elif hasattr(table, "columns") and "codes" in table.columns:
            mat = np.array(table["codes"].to_list(), dtype=np.int64)
        else:
            mat = np.asarray(table, dtype=np.int64)
        if mat.ndim != 2 or mat.shape[0] == 0:
            raise ValueError(f"SIDVocab: the SID table must be a non-empty [items, levels] array, "
                             f"got shape {mat.shape}")
        if levels is not None and levels != mat.shape[1]:
            raise ValueError(f"SIDVocab: levels={levels} but the SID table has {mat.shape[1]}")
        used = [set(mat[:, k].tolist()) for k in range(mat.shape[1])]
        sizes = [int(mat[:, k].max()) + 1 for k in range(mat.shape[1])]
        if codebook_size is not None:
            given = ([int(codebook_size)] * len(sizes) if isinstance(codebook_size, int)
                     else [int(c) for c in codebook_size])
            if len(given) != len(sizes) or any(g < s for g, s in zip(given, sizes)):
                raise ValueError(f"SIDVocab: codebook_size={codebook_size} does not cover the "
                                 f"table's codes (needs at least {sizes} per level)")
            sizes = given
        return sizes, used
    if levels is None or codebook_size is None:
        raise ValueError("SIDVocab.from_tokenizer: give levels and codebook_size, or table")
    if levels < 1:
        raise ValueError(f"SIDVocab: levels must be >= 1, got {levels}")
    sizes = ([int(codebook_size)] * levels if isinstance(codebook_size, int)
             else [int(c) for c in codebook_size])
    if len(sizes) != levels or min(sizes) < 1:
        raise ValueError(f"SIDVocab: codebook_size={codebook_size} must be >= 1 for each of "
                         f"{levels} levels")
    return sizes, None


@dataclass(eq=False)
class SIDVocab:
    """SID token ids per level and the structural token ids of one tokenizer."""

    levels: int
    level_ids: list[torch.Tensor]  # per level: long [C_k], token id of code c (-1: no token)
    think_open_id: int
    think_close_id: int
    eos_id: int
    pad_id: int
    vocab_size: int  # len(tokenizer): ids >= this are never generated
    sid_ids: torch.Tensor  # long: every SID-like token id of the tokenizer (any level / code)
    bos_id: int | None = None
    special_ids: torch.Tensor = field(  # other special tokens (unk, chat markers, ...)
        default_factory=lambda: torch.zeros(0, dtype=torch.long))
    tokenizer: Any = field(default=None, repr=False)  # kept for decoding text; optional
    token_level: torch.Tensor = field(init=False, repr=False)  # long [vocab_size]: level or -1
    token_code: torch.Tensor = field(init=False, repr=False)  # long [vocab_size]: code or -1

    def __post_init__(self) -> None:
        if self.levels != len(self.level_ids):
            raise ValueError(f"SIDVocab: levels={self.levels} but {len(self.level_ids)} id arrays")
        self.token_level = torch.full((self.vocab_size,), -1, dtype=torch.long)
        self.token_code = torch.full((self.vocab_size,), -1, dtype=torch.long)
        for level, ids in enumerate(self.level_ids):
            codes = torch.nonzero(ids >= 0).flatten()
            tok = ids[codes]
            if (tok >= self.vocab_size).any():
                raise ValueError(f"SIDVocab: level {level} has ids beyond vocab_size")
            if (self.token_level[tok] >= 0).any():
                raise ValueError(f"SIDVocab: level {level} shares token ids with another level")
            self.token_level[tok] = level
            self.token_code[tok] = codes
        structural = {self.think_open_id, self.think_close_id, self.eos_id}
        if len(structural) != 3 or structural & set(self.sid_ids.tolist()):
            raise ValueError(f"SIDVocab: <think>, </think>, eos and the SID tokens must be "
                             f"distinct ids, got {self.think_open_id}, {self.think_close_id}, "
                             f"{self.eos_id}")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, levels: int | None = None,
                       codebook_size: int | Sequence[int] | None = None, *,
                       table: Any = None) -> SIDVocab:
        """Build from a tokenizer and either ``levels`` + ``codebook_size`` (an int, or one size
        per level) or ``table`` (an :class:`SIDTrie`, a SID table with a ``codes`` column, or a
        code matrix). With a table, only the codes it uses must be single tokens (and ``levels``
        / ``codebook_size``, when also given, must agree with it); otherwise every code is.
        """
        sizes, used = _level_sizes(levels, codebook_size, table)
        vocab = tokenizer.get_vocab()
        bad: list[str] = []
        level_ids = []
        for level, size in enumerate(sizes):
            ids = torch.full((size,), -1, dtype=torch.long)
            for code in range(size):
                tok = sid_token(level, code)
                tid = _single_id(tokenizer, tok, vocab)
                if tid is not None:
                    ids[code] = tid
                elif used is None or code in used[level]:
                    bad.append(tok)
            level_ids.append(ids)
        markers = {}
        for tok in (THINK_OPEN, THINK_CLOSE):
            tid = _single_id(tokenizer, tok, vocab)
            if tid is None:
                bad.append(tok)
            markers[tok] = tid
        if bad:
            raise ValueError(
                f"SIDVocab: {len(bad)} token(s) are not a single token id of the tokenizer "
                f"(add them with model.tokenizer.add_sid_tokens): {', '.join(bad[:10])}"
                + (" ..." if len(bad) > 10 else ""))
        if tokenizer.eos_token_id is None:
            raise ValueError("SIDVocab: the tokenizer has no eos token")
        eos = int(tokenizer.eos_token_id)
        pad = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else eos
        bos = getattr(tokenizer, "bos_token_id", None)
        sid_like = sorted(i for t, i in vocab.items() if _SID_TOKEN.fullmatch(t))
        special = sorted(set(getattr(tokenizer, "all_special_ids", []) or [])
                         - {markers[THINK_OPEN], markers[THINK_CLOSE]})
        return cls(levels=len(sizes), level_ids=level_ids, think_open_id=int(markers[THINK_OPEN]),
                   think_close_id=int(markers[THINK_CLOSE]), eos_id=eos, pad_id=pad,
                   vocab_size=len(tokenizer), sid_ids=torch.tensor(sid_like, dtype=torch.long),
                   bos_id=None if bos is None else int(bos),
                   special_ids=torch.tensor(special, dtype=torch.long), tokenizer=tokenizer)

    # -- lookups -------------------------------------------------------------------------
    def token_id(self, level: int, code: int) -> int:
        """Token id of ``code`` at ``level``; KeyError when it has no token."""
        if not 0 <= level < self.levels or not 0 <= code < len(self.level_ids[level]):
            raise KeyError(f"SIDVocab: no token for level {level} code {code}")
        tid = int(self.level_ids[level][code])
        if tid < 0:
            raise KeyError(f"SIDVocab: no token for {sid_token(level, code)}")
        return tid

    def code_of(self, token_id: int) -> tuple[int, int] | None:
        """``(level, code)`` of a SID token id, None for any other id."""
        if not 0 <= token_id < self.vocab_size or int(self.token_level[token_id]) < 0:
            return None
        return int(self.token_level[token_id]), int(self.token_code[token_id])

    def codes_to_ids(self, codes: Sequence[int]) -> list[int]:
        """Token ids of a SID (one per level)."""
        return [self.token_id(level, int(c)) for level, c in enumerate(codes)]

    @property
    def max_codes(self) -> int:
        """Largest codebook size over the levels."""
        return max(len(ids) for ids in self.level_ids)

    def banned_in_think(self) -> torch.Tensor:
        """Ids a thinking block may not contain: SID tokens, ``<think>``, eos, pad, bos and the
        tokenizer's other special tokens (``</think>`` is governed by the block rule)."""
        extra = [self.think_open_id, self.eos_id, self.pad_id]
        if self.bos_id is not None:
            extra.append(self.bos_id)
        banned = torch.cat([self.sid_ids, self.special_ids, torch.tensor(extra, dtype=torch.long)])
        return torch.unique(banned[banned != self.think_close_id])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (needs the tokenizer this vocab was built from)."""
        if self.tokenizer is None:
            raise ValueError("SIDVocab.decode: built without a tokenizer")
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)
