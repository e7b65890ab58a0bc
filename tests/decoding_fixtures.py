"""Shared fixtures of the test_decoding_* modules (plus checks of the fixtures themselves).

* :func:`setup` -- a small catalog trie (codebook 3, 3 levels), a tokenizer trained on a few
  prompts, its :class:`SIDVocab`, and a tiny random Qwen2 (``preset="tiny"``).
* :class:`TableModel` -- a fake causal LM whose next-token logits are a chosen function of each
  row's real tokens so far, with a cache object supporting ``batch_select_indices``; lets a test
  control exactly what the "model" wants.
* :class:`CloseBias` -- wraps a model and adds a per-context bonus to ``</think>`` so greedy blocks
  end at different lengths (exercises rows that wait for each other).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from sapo_pipeline.decoding import SIDVocab
from sapo_pipeline.model.backbone import BackboneConfig, build_model
from sapo_pipeline.model.tokenizer import TokenizerConfig, train_tokenizer
from sapo_pipeline.sid.catalog import SIDTrie, format_sid, sid_tokens

LEVELS, CODEBOOK = 3, 3


def catalog_codes(n: int = 12, seed: int = 3) -> list[tuple[int, int, int]]:
    every = [(a, b, c) for a in range(CODEBOOK) for b in range(CODEBOOK) for c in range(CODEBOOK)]
    codes = random.Random(seed).sample(every, n)
    return sorted(codes)


@dataclass
class Setup:
    codes: list[tuple[int, ...]]
    trie: SIDTrie
    tokenizer: Any
    vocab: SIDVocab
    model: Any
    prompts: list[list[int]]


@functools.cache
def setup() -> Setup:
    codes = catalog_codes()
    trie = SIDTrie(range(100, 100 + len(codes)), codes)
    words = ["red pen", "blue desk", "lamp", "office chair", "paper clip", "ink"]
    texts = [f"The user bought {format_sid(c)} {w}. Next item: <think> the category is {w} "
             f"</think>" for c in codes for w in words]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=320), sid_tokens(LEVELS, CODEBOOK))
    vocab = SIDVocab.from_tokenizer(tok, table=trie)
    model = build_model(BackboneConfig(preset="tiny"), tok, seed=0).eval()
    rng = random.Random(0)
    prompts = []
    for i in range(6):
        hist = ", ".join(format_sid(codes[rng.randrange(len(codes))]) for _ in range(1 + i % 4))
        prompts.append(tok.encode(f"The user bought {hist} {words[i]}. Next item: ",
                                  add_special_tokens=False))
    return Setup(codes, trie, tok, vocab, model, prompts)


class _History:
    """Fake KV cache: the fed tokens and their attention-mask entries."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.ids, self.mask = ids, mask

    def append(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        self.ids = torch.cat([self.ids, ids], 1)
        self.mask = torch.cat([self.mask, mask], 1)

    def batch_select_indices(self, idx: torch.Tensor) -> None:
        self.ids, self.mask = self.ids[idx], self.mask[idx]

    def rows(self) -> list[list[int]]:
        return [r[m.bool()].tolist() for r, m in zip(self.ids, self.mask)]


class TableModel(nn.Module):
    """Fake causal LM: ``logits = score_fn(real tokens of the row so far)``."""

    def __init__(self, vocab_size: int, score_fn: Callable[[list[int]], torch.Tensor]) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.score_fn = score_fn
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: _History | None = None, **_: Any) -> SimpleNamespace:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        new_mask = attention_mask[:, -input_ids.shape[1]:]
        if cache is None:
            cache = _History(input_ids, new_mask)
        else:
            cache.append(input_ids, new_mask)
        logits = torch.stack([self.score_fn(r) for r in cache.rows()])
        return SimpleNamespace(logits=logits[:, None, :], cache=cache)


class CloseBias(nn.Module):
    """``model`` with ``</think>`` boosted by ``scale * sin(1.7 * id of the current token)`` at
    every position: greedy thinking blocks then end after context-dependent numbers of tokens."""

    def __init__(self, model: Any, close_id: int, scale: float = 3.0) -> None:
        super().__init__()
        self.inner, self.close_id, self.scale = model, close_id, scale
        self.config = model.config  # so the decoders treat it as the transformers model it wraps

    def forward(self, input_ids: torch.Tensor, **kw: Any) -> Any:
        out = self.inner(input_ids=input_ids, **kw)
        ids = input_ids[:, -out.logits.shape[1]:]
        out.logits[..., self.close_id] += self.scale * torch.sin(ids.float() * 1.7)
        return out


def plain_logprobs(model: Any, prompts: list[list[int]], responses: list[list[int]]
                   ) -> list[torch.Tensor]:
    """Log-prob of each response token given prompt + previous tokens: one uncached, unpadded
    forward pass per row (the naive reference)."""
    out = []
    with torch.no_grad():
        for p, r in zip(prompts, responses):
            ids = torch.tensor([list(p) + list(r)])
            logits = model(input_ids=ids).logits[0].float()
            lp = logits.log_softmax(-1)[len(p) - 1: len(p) + len(r) - 1]
            out.append(lp.gather(1, torch.tensor(r)[:, None]).squeeze(1))
    return out


# -- checks of the fixtures ----------------------------------------------------------------
