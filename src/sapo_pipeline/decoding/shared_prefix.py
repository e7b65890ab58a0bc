"""A KV cache whose rows share their prompt: the prompt's keys / values are stored once.

When a prompt's cache is expanded to B beams or G samples, a plain cache copies the prompt's
keys and values B times, and every decoding step reads all B copies. Here the prefilled prompts
stay in one ``[P, kv_heads, L_prompt, d]`` block (the *prefix*); each row owns only the tokens
decoded after it (the *suffix*, a growing buffer written in place) and knows its prompt
(``row_prompt``). Selecting rows (beam reordering, expansion, compaction) moves suffixes only.

A decoding step's attention (:func:`shared_prefix_attention`, registered with transformers'
``AttentionInterface``) scores each row's query against its prompt's prefix -- all rows of one
prompt in one matrix product, so the prefix is read once per prompt -- and against its own
suffix, and takes one softmax over both. It is the same attention as over the concatenated
sequence (cascade attention); log-probs match a plain forward to float rounding. The prefill
(several query tokens) is ordinary attention, delegated to ``sdpa``.

:func:`shared_prefix_cache` builds the cache for a model whose layers are plain full-attention
layers, else returns None; :func:`shared_prefix_attention_for` sets the model's attention
implementation for the duration of a forward and passes the cache to the attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

ATTENTION_NAME = "sapo_shared_prefix"
CACHE_KWARG = "shared_prefix_cache"
SUPPORTED = ("sdpa", "eager")


class SharedPrefixLayer(DynamicLayer):
    """One layer of the cache: the prompts' keys / values once, plus each row's decoded suffix."""

    def __init__(self, reserve: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reserve = reserve
        self.prefix_k: torch.Tensor | None = None  # [P, kvh, Lp, d]
        self.prefix_v: torch.Tensor | None = None
        self._kbuf: torch.Tensor | None = None  # [n, kvh, capacity, d]
        self._vbuf: torch.Tensor | None = None
        self._len = 0
        self.row_prompt: torch.Tensor | None = None  # [n] long
        self._slots: tuple[torch.Tensor | None, int] | None = None

    # -- storage -------------------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The first call stores the prompts (and returns them, for the prefill's attention);
        later calls append one token per row and return the rows' suffixes."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.prefix_k is None:
            self.prefix_k, self.prefix_v = key_states, value_states
            self.row_prompt = torch.arange(key_states.shape[0], device=key_states.device)
            self._slots = None
            return key_states, value_states
        need = self._len + key_states.shape[-2]
        if self._kbuf is None or need > self._kbuf.shape[-2]:
            self._grow(key_states, max(need + self.reserve, need * 3 // 2))
        self._kbuf[:, :, self._len:need] = key_states  # type: ignore[index]
        self._vbuf[:, :, self._len:need] = value_states  # type: ignore[index]
        self._len = need
        return self.suffix_k, self.suffix_v

    def _grow(self, like: torch.Tensor, capacity: int) -> None:
        shape = (self.num_rows, like.shape[1], capacity, like.shape[-1])
        kb, vb = like.new_empty(shape), like.new_empty(shape)
        if self._len:
            kb[:, :, : self._len] = self._kbuf[:, :, : self._len]  # type: ignore[index]
            vb[:, :, : self._len] = self._vbuf[:, :, : self._len]  # type: ignore[index]
        self._kbuf, self._vbuf = kb, vb

    @property
    def num_rows(self) -> int:
        return 0 if self.row_prompt is None else int(self.row_prompt.shape[0])

    @property
    def suffix_k(self) -> torch.Tensor:
        return self._kbuf[:, :, : self._len]  # type: ignore[index]

    @property
    def suffix_v(self) -> torch.Tensor:
        return self._vbuf[:, :, : self._len]  # type: ignore[index]

    @property
    def prefix_length(self) -> int:
        return 0 if self.prefix_k is None else int(self.prefix_k.shape[-2])

    def get_seq_length(self) -> int:
        return self.prefix_length + self._len

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (repeats allowed); the prompts' block is never copied."""
        if self.row_prompt is None:
            return
        indices = indices.to(self.row_prompt.device)
        self._fold_if_one_row_per_prompt()
        self.row_prompt = self.row_prompt[indices]
        self._slots = None
        if self._kbuf is not None:
            cap = self._kbuf.shape[-2]
            kb = self._kbuf.new_empty((len(indices), self._kbuf.shape[1], cap,
                                       self._kbuf.shape[-1]))
            vb = torch.empty_like(kb)
            if self._len:
                kb[:, :, : self._len] = self._kbuf[indices, :, : self._len]
                vb[:, :, : self._len] = self._vbuf[indices, :, : self._len]  # type: ignore[index]
            self._kbuf, self._vbuf = kb, vb

    def _fold_if_one_row_per_prompt(self) -> None:
        """While every prompt has exactly one row (in prompt order), the rows' decoded tokens
        are still their prompt's alone: append them to the prefix, so that rows selected from
        here on share them too (step-wise beam search: the level-1 thinking block, written
        once per prompt, then read once per prompt by all its beams). The cache positions keep
        their order -- prefix, then suffix -- so attention masks need no change."""
        if not self._len or self.prefix_k is None or self._kbuf is None:
            return
        rp = self.row_prompt
        if rp is None or len(rp) != self.prefix_k.shape[0] or not bool(
                (rp == torch.arange(len(rp), device=rp.device)).all()):
            return
        self.prefix_k = torch.cat([self.prefix_k, self.suffix_k], dim=2)
        self.prefix_v = torch.cat([self.prefix_v, self.suffix_v], dim=2)
        self._len = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        idx = torch.arange(self.num_rows).repeat_interleave(repeats)
        self.batch_select_indices(idx)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SharedPrefixLayer: cropping is not supported")

    def reset(self) -> None:
        super().reset()
        self.prefix_k = self.prefix_v = self._kbuf = self._vbuf = None
        self.row_prompt, self._slots, self._len = None, None, 0

    # -- grouping rows by prompt -----------------------------------------------------------------
    def slots(self) -> tuple[torch.Tensor | None, int]:
        """:func:`prompt_slots` of the rows (cached until the rows change)."""
        if self._slots is None:
            assert self.row_prompt is not None and self.prefix_k is not None
            self._slots = prompt_slots(self.row_prompt, self.prefix_k.shape[0])
        return self._slots


def prompt_slots(row_prompt: torch.Tensor, p: int) -> tuple[torch.Tensor | None, int]:
    """``(slot, width)``: row r sits at ``slot[r] = prompt * width + rank`` of a ``[p, width]``
    grid, ``width`` = most rows any prompt has; ``slot`` is None when the rows are that grid
    already (every prompt has ``width`` consecutive rows: beams)."""
    rp = row_prompt
    counts = torch.bincount(rp, minlength=p)
    width = max(int(counts.max()), 1)
    order = torch.argsort(rp, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(rp)
    rank[order] = torch.arange(len(rp), device=rp.device) - starts[rp[order]]
    slot = rp * width + rank
    dense = len(rp) == p * width and bool((slot == torch.arange(len(rp), device=rp.device)).all())
    return (None if dense else slot, width)


def _grouped(x: torch.Tensor, slot: torch.Tensor | None, p: int, width: int) -> torch.Tensor:
    """``[n, kvh, r, e]`` rows -> ``[p, kvh, width * r, e]`` (empty slots are zeros;
    ``slot=None``: the rows already are the full grid, in order)."""
    n, kvh, r, e = x.shape
    grid = x
    if slot is not None:
        grid = x.new_zeros((p * width, kvh, r, e))
        grid[slot] = x
    return grid.view(p, width, kvh, r, e).transpose(1, 2).reshape(p, kvh, width * r, e)


def _ungrouped(x: torch.Tensor, slot: torch.Tensor | None, width: int, r: int) -> torch.Tensor:
    """Inverse of :func:`_grouped`: ``[p, kvh, width * r, e]`` -> ``[n, kvh, r, e]``."""
    p, kvh, _, e = x.shape
    grid = x.view(p, kvh, width, r, e).transpose(1, 2).reshape(p * width, kvh, r, e)
    return grid if slot is None else grid[slot]


def shared_prefix_attention(module: Any, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor, attention_mask: torch.Tensor | None,
                            scaling: float | None = None, **kwargs: Any
                            ) -> tuple[torch.Tensor, None]:
    """Attention of one new token per row over its prompt's prefix and its own suffix.

    ``key`` / ``value`` are the rows' suffixes (what :meth:`SharedPrefixLayer.update` returned);
    the prefix comes from the cache passed as the ``shared_prefix_cache`` keyword. Anything else
    (the prefill, a model called without that cache) is plain ``sdpa``.
    """
    cache = kwargs.get(CACHE_KWARG)
    layer = None if cache is None else cache.layers[module.layer_idx]
    if layer is None or query.shape[2] != 1 or layer.prefix_k is None or key.shape[2] == 0 \
            or layer.num_rows != query.shape[0]:
        kwargs.pop(CACHE_KWARG, None)
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, **kwargs)
    out = attend_rows(layer, query, key, value, None if attention_mask is None
                      else attention_mask[:, :, -1:, :], scaling)
    return out.transpose(1, 2).contiguous(), None


def attend_rows(layer: SharedPrefixLayer, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor, mask: torch.Tensor | None, scaling: float | None,
                slots: tuple[torch.Tensor | None, int] | None = None) -> torch.Tensor:
    """The shared-prefix attention itself: ``query`` ``[n, heads, 1, d]`` (one new token per
    row), ``key`` / ``value`` the rows' suffixes ``[n, kvh, Ls, d]``, ``mask`` ``[n, 1, 1,
    Lp + Ls]`` (bool: True = attend; float: added to the scores) or None. Returns ``[n, heads,
    1, d]``. ``slots``: :func:`prompt_slots` of the rows when they are a subset of the cache's
    (default: the cache's own rows)."""
    n, heads, _, d = query.shape
    pk, pv = layer.prefix_k, layer.prefix_v
    assert pk is not None and pv is not None
    p, kvh, lp = pk.shape[0], pk.shape[1], pk.shape[2]
    rep = heads // kvh
    scale = scaling if scaling is not None else d ** -0.5
    q = query.reshape(n, kvh, rep, d)
    if scale != 1.0:
        q = q * scale
    slot, width = layer.slots() if slots is None else slots
    s_pre = _ungrouped(torch.matmul(_grouped(q, slot, p, width), pk.transpose(-1, -2)), slot,
                       width, rep)  # [n, kvh, rep, Lp]
    s_suf = torch.matmul(q, key.transpose(-1, -2))  # [n, kvh, rep, Ls]
    scores = torch.cat([s_pre, s_suf], dim=-1)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    probs = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    out = _ungrouped(torch.matmul(_grouped(probs[..., :lp], slot, p, width), pv), slot, width, rep)
    out = out + torch.matmul(probs[..., lp:], value)  # [n, kvh, rep, d]
    return out.reshape(n, heads, 1, d)


AttentionInterface.register(ATTENTION_NAME, shared_prefix_attention)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def _config(model: Any) -> Any:
    return getattr(model, "config", None)


def layer_cache(model: Any, make_layer: Callable[[], DynamicLayer]) -> DynamicCache | None:
    """A ``DynamicCache`` for ``model`` whose layers are ``make_layer()``, or None (let the
    model build its own) when the model has no transformers config or uses anything but plain
    full-attention layers (sliding windows, linear attention)."""
    config = _config(model)
    if config is None or not hasattr(config, "get_text_config"):
        return None
    try:
        cache = DynamicCache(config=config)
    except Exception:  # pragma: no cover - exotic configs: fall back to the model's default
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [make_layer() for _ in cache.layers]
    return cache


def shared_prefix_cache(model: Any, reserve: int) -> DynamicCache | None:
    """A cache of :class:`SharedPrefixLayer` for ``model``, or None where :func:`layer_cache`
    gives none or the model's attention is not sdpa / eager."""
    if getattr(_config(model), "_attn_implementation", None) not in SUPPORTED:
        return None
    return layer_cache(model, lambda: SharedPrefixLayer(reserve=reserve))


@contextlib.contextmanager
def shared_prefix_attention_for(model: Any, cache: DynamicCache) -> Iterator[dict[str, Any]]:
    """Within the block the model attends through :func:`shared_prefix_attention`; yields the
    keyword arguments to pass to its forward."""
    config = _config(model)
    before = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    try:
        yield {CACHE_KWARG: cache}
    finally:
        config._attn_implementation = before
