"""Tree decoding: the branches of a prompt share its cache rows instead of copying them.

For layouts where every branch advances in lock-step (plain SID decoding: K SID tokens then eos),
:class:`TreeSession` keeps ONE cache row per prompt. Each step feeds the next token of all W
branches of a prompt as W new positions of that row, with a custom 4-d attention mask: a token
sees the prompt and its own ancestors (its branch's earlier tokens), nothing else. Position ids
are ``prompt length + depth``, so every branch computes exactly what a separate row would.
Beam reordering only permutes the ancestor bookkeeping (a ``[P, W, S]`` bool tensor); the KV cache
is never copied. Costs: the cache holds ``L + W * depth`` entries per prompt and every query
attends over all of them (masked) -- cheap for K+1 steps, wasteful for long thinking blocks,
which therefore use :class:`~.session.KVSession`.

Needs a transformers model that honours 4-d attention masks (``sdpa`` or ``eager`` attention);
:func:`open_session` falls back to :class:`~.session.KVSession` otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from sapo_pipeline.decoding.session import KVSession


def _attn_implementation(model: Any) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) if config is not None else None


def supports_tree(model: Any) -> bool:
    """True for a transformers model whose attention takes custom 4-d masks."""
    return _attn_implementation(model) in ("sdpa", "eager")


class TreeSession(KVSession):
    """A :class:`KVSession` whose rows are branches of shared prompt rows (module docstring)."""

    share_prefix = False  # the branches already share one cache row per prompt

    def __init__(self, model: Any, prompts: Sequence[Sequence[int]], pad_id: int,
                 reserve: int = 64) -> None:
        super().__init__(model, prompts, pad_id, reserve=reserve)
        self.num_prompts = len(prompts)
        self.prompt_mask = self.mask.bool()
        self.base_pos = self.next_pos.clone()
        self.width = 1
        self.branch_mask = torch.zeros((self.num_prompts, 1, 0), dtype=torch.bool,
                                       device=self.device)
        self._parent: torch.Tensor | None = None
        self._bool_mask = _attn_implementation(model) == "sdpa"
        self._dtype = next(model.parameters()).dtype
        self.depth = 0

    def __len__(self) -> int:
        return self.num_prompts * self.width

    def select(self, idx: torch.Tensor) -> None:
        """Keep branches ``idx`` (global row ids, grouped by prompt: ``p * width + branch``)."""
        idx = idx.cpu()
        p = self.num_prompts
        if idx.numel() % p:
            raise ValueError(f"TreeSession.select: {idx.numel()} rows for {p} prompts")
        rows = idx.view(p, -1)
        parent = rows - torch.arange(p)[:, None] * self.width
        if (parent < 0).any() or (parent >= self.width).any():
            raise ValueError("TreeSession.select: a row left its prompt's branches")
        if self._parent is not None:
            parent = self._parent.gather(1, parent)
        self._parent = parent
        self.width = rows.shape[1]
        self.logits = self.logits[idx]

    def step(self, tokens: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the next token of every branch (all real: no holes in tree decoding)."""
        if real is not None and not bool(real.all()):
            raise ValueError("TreeSession.step: every branch must advance (no holes)")
        p, w = self.num_prompts, self.width
        bm = self.branch_mask
        if self._parent is not None:
            index = self._parent.to(self.device)[:, :, None].expand(-1, -1, bm.shape[2])
            bm = bm.gather(1, index)
        own = torch.eye(w, dtype=torch.bool, device=self.device).expand(p, w, w)
        bm = torch.cat([bm, own], dim=2)
        full = torch.cat([self.prompt_mask[:, None, :].expand(p, w, -1), bm], dim=2)[:, None]
        if not self._bool_mask:
            full = torch.zeros(full.shape, dtype=self._dtype, device=self.device).masked_fill_(
                ~full, torch.finfo(self._dtype).min)
        pos = (self.base_pos + self.depth)[:, None].expand(p, w)
        t0 = time.perf_counter()
        out = self.model(input_ids=tokens.to(self.device).view(p, w), attention_mask=full,
                         position_ids=pos, cache=self.cache, use_cache=True)
        self.step_seconds += time.perf_counter() - t0
        self.cache = out.cache
        self.logits = out.logits.float().reshape(p * w, -1).cpu()
        self.branch_mask, self._parent = bm, None
        self.depth += 1
        self.forwards += 1
        return self.logits


def open_session(model: Any, prompts: Sequence[Sequence[int]], pad_id: int, *, reserve: int,
                 branches: int, tree: bool) -> KVSession:
    """A :class:`TreeSession` when ``tree`` is asked for and the model supports it (room for
    ``reserve`` tokens of each of ``branches`` branches), else a :class:`KVSession`."""
    if tree and supports_tree(model):
        return TreeSession(model, prompts, pad_id, reserve=reserve * branches)
    return KVSession(model, prompts, pad_id, reserve=reserve)
