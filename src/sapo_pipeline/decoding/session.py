"""A batch of sequences decoded token by token over one KV cache.

Logits are handed out as float32 CPU tensors (the decoding state machine lives on the CPU).

:class:`KVSession` prefills left-padded prompts once (``logits_to_keep=1``: no ``[n, L, V]``
logits), then feeds one token per row per :meth:`KVSession.step`. :meth:`KVSession.select` picks
rows with repeats -- expanding each prompt's cache to G samples or B beams, reordering beams,
dropping finished rows -- via the cache's ``batch_select_indices`` (transformers 5 ``Cache`` API),
so a prompt is never encoded twice.

The cache is, when the model's layers allow it, a :mod:`~.shared_prefix` cache (the prompts'
keys / values stored once, however many rows each prompt is selected into; each row's decoded
tokens in a growing buffer) or a ``DynamicCache`` of :class:`GrowingLayer` (room for ``reserve``
more tokens per row, written in place). Rows need not move in lock-step: a row fed with
``real=False`` gets a pad token whose attention mask entry is 0 and whose position id is not
consumed (a hole in the cache that no later token attends to); it keeps its logits. Position ids
are the count of real tokens before a token, exactly as in a plain right-padded forward pass
over the finished sequence, so log-probs recomputed that way match.

On a shared-prefix cache and a plain Qwen2 model, steps run through
:class:`~.qwen2_step.Qwen2Step` (the step written out over the model's weights, computing only
the rows fed a real token) instead of the transformers forward (``KVSession.written_step``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from sapo_pipeline.decoding.qwen2_step import Qwen2Step
from sapo_pipeline.decoding.shared_prefix import (
    layer_cache,
    shared_prefix_attention_for,
    shared_prefix_cache,
)


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys / values live in a buffer with spare room, so appending a
    token writes in place instead of re-concatenating the whole cache every step.

    ``keys`` / ``values`` are views of the first ``length`` positions. The buffer grows by half
    (at least ``reserve`` positions) when full; row selection copies it once.
    """

    def __init__(self, reserve: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reserve = reserve
        self._kbuf: torch.Tensor | None = None
        self._vbuf: torch.Tensor | None = None
        self._len = 0

    def _views(self) -> None:
        self.keys = self._kbuf[:, :, : self._len]
        self.values = self._vbuf[:, :, : self._len]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        need = self._len + key_states.shape[-2]
        if self._kbuf is None or need > self._kbuf.shape[-2]:
            cap = max(need + self.reserve, need * 3 // 2)
            kb = key_states.new_empty((*key_states.shape[:2], cap, key_states.shape[-1]))
            vb = value_states.new_empty((*value_states.shape[:2], cap, value_states.shape[-1]))
            if self._len:
                kb[:, :, : self._len] = self._kbuf[:, :, : self._len]
                vb[:, :, : self._len] = self._vbuf[:, :, : self._len]
            self._kbuf, self._vbuf = kb, vb
        self._kbuf[:, :, self._len:need] = key_states
        self._vbuf[:, :, self._len:need] = value_states
        self._len = need
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._len:
            self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
            self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._len:
            self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
            self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
            self._views()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("GrowingLayer.crop: pass a negative number of tokens to remove")
        if tokens_to_remove and self._len:
            self._len = max(0, self._len + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        super().reset()
        self._kbuf = self._vbuf = None
        self._len = 0


def growing_cache(model: Any, reserve: int) -> DynamicCache | None:
    """A ``DynamicCache`` of :class:`GrowingLayer` for ``model``, or None (let the model build
    its own) when the model has no config or uses anything but plain full-attention layers."""
    return layer_cache(model, lambda: GrowingLayer(reserve=reserve))


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)`` long ``[n, max_len]``, prompts right-aligned."""
    if not prompts:
        raise ValueError("left_pad: no prompts")
    lens = [len(p) for p in prompts]
    if min(lens) == 0:
        raise ValueError(f"left_pad: prompt {lens.index(0)} is empty")
    width = max(lens)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[r, width - len(p):] = 1
    return ids, mask


class KVSession:
    """Prefilled prompts plus the tokens fed since; ``logits`` are the next-token logits.

    With ``share_prefix`` (default) and a model that allows it, the cache is a
    :mod:`~.shared_prefix` cache: rows selected from one prompt share its keys / values.
    """

    share_prefix = True
    written_step = True  # steps through :class:`~.qwen2_step.Qwen2Step` where it applies
    #: a written step computes only the rows fed a real token while they are fewer than this
    #: share of the rows; above it every row is computed (a hole's key / value is written but
    #: masked, its logits kept), which is cheaper than gathering the rows' cached suffixes
    subset_below = 0.6

    def __init__(self, model: Any, prompts: Sequence[Sequence[int]], pad_id: int,
                 reserve: int = 64, share_prefix: bool | None = None) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        ids, mask = left_pad(prompts, pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        t0 = time.perf_counter()
        share = self.share_prefix if share_prefix is None else share_prefix
        cache = shared_prefix_cache(model, reserve + 1) if share else None
        self.shared = cache is not None
        if cache is None:
            cache = growing_cache(model, reserve + 1)
        self.cache = cache
        extra = {} if cache is None else {"cache": cache}
        with self._attention():
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                        logits_to_keep=1, **extra)
        self.prefill_seconds = time.perf_counter() - t0
        self.cache = out.cache
        self.logits: torch.Tensor = out.logits[:, -1].float().cpu()
        self.mask = mask
        self.next_pos = mask.sum(-1)
        self.forwards = 1
        self.step_seconds = 0.0
        self.fast: Qwen2Step | None = None
        if self.shared and self.written_step:
            self.fast = Qwen2Step.for_model(model)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def _attention(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """The attention every forward of this session runs under (shared prefix or the
        model's own)."""
        if getattr(self, "shared", False):
            return shared_prefix_attention_for(self.model, self.cache)
        return contextlib.nullcontext({})

    def select(self, idx: torch.Tensor) -> None:
        """Keep rows ``idx`` (in that order; repeats duplicate a row's cache)."""
        dev = idx.to(self.device)
        self.cache.batch_select_indices(dev)
        self.mask = self.mask[dev]
        self.next_pos = self.next_pos[dev]
        self.logits = self.logits[idx.cpu()]

    def step(self, tokens: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one token per row (``real=False`` rows get a masked hole and keep their logits);
        returns the logits."""
        tokens = tokens.to(self.device)
        if real is None:
            col = torch.ones_like(self.next_pos)
            ids = tokens
        else:
            real = real.to(self.device)
            col = real.long()
            ids = torch.where(real, tokens, self.pad_id)
        self.mask = torch.cat([self.mask, col[:, None]], dim=1)
        t0 = time.perf_counter()
        moving = None if real is None else int(real.sum())
        if self.fast is not None and moving is not None and moving < len(tokens) and (
                moving < self.subset_below * len(tokens)):
            rows = real.nonzero().flatten()
            # rows fed a hole keep their logits: the fed rows' are overwritten in place (the
            # session owns the tensor; every reader of the old logits has run by now)
            logits = self.logits
            logits[rows.cpu()] = self.fast(ids, self.next_pos, self.mask, self.cache.layers,
                                           rows).float().cpu()
        elif self.fast is not None:
            logits = self.fast(ids, self.next_pos, self.mask, self.cache.layers)
            if moving is not None and moving < len(tokens):  # rows fed a hole keep their logits
                hole = ~real.cpu()
                logits[hole] = self.logits[hole]
        else:
            with self._attention() as extra:
                out = self.model(input_ids=ids[:, None], attention_mask=self.mask,
                                 position_ids=self.next_pos[:, None], cache=self.cache,
                                 use_cache=True, **extra)
            self.cache = out.cache
            logits = out.logits[:, -1].float().cpu()
            if real is not None:  # rows fed a hole keep their logits
                logits = torch.where(real.cpu()[:, None], logits, self.logits)
        self.step_seconds += time.perf_counter() - t0
        self.logits = logits.float().cpu()
        self.next_pos = self.next_pos + col
        self.forwards += 1
        return self.logits
