"""Valid-split SID accuracy: greedy, trie-constrained generation of the next item's SID.

Decoding is :func:`sapo_pipeline.decoding.greedy_decode` (one beam of the constrained beam
search), in one of two response layouts (``SidEvalConfig.layout``):

* ``sid`` (Stage 1, task history SIDs -> next SID): the K SID tokens are generated directly
  after the prompt; at level k only the tokens of the trie children of the prefix generated so
  far are allowed.
* ``reasoning`` (Stage 2): per level k, ``<think>`` is forced, the block is generated greedily
  (SID-like tokens, special tokens, eos and ``<think>`` masked; at least one free token, as the
  layout forbids empty blocks) until the model emits ``</think>`` or ``think_max_tokens`` free
  tokens were generated (then ``</think>`` is forced), then the SID token of level k is chosen
  among the trie children.

Never unconstrained: the decoder's state machine only offers catalog prefixes, and a catalog
code without a single-token spelling in the tokenizer is a ``ValueError`` when the
:class:`~sapo_pipeline.decoding.vocab.SIDVocab` is built. A target SID that is not a catalog
item is an error too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sapo_pipeline.decoding import greedy_decode
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.sid.catalog import SIDTrie, parse_sid

logger = logging.getLogger(__name__)

LAYOUTS = ("sid", "reasoning")
_SID_TOKEN_RE = re.compile(r"<[a-z]_(?:0|[1-9][0-9]*)>")


def target_sid(response: str, where: str = "response") -> tuple[int, ...]:
    """The SID spelled by the SID tokens of ``response``, in order (think text ignored)."""
    tokens = _SID_TOKEN_RE.findall(response)
    if not tokens:
        raise ValueError(f"{where}: no SID token in {response[:80]!r}")
    return parse_sid("".join(tokens))


def constrained_decode(model: Any, tokenizer: Any, trie: SIDTrie, prompts: Sequence[Sequence[int]],
                       *, layout: str = "sid", batch_size: int = 32, think_max_tokens: int = 48,
                       vocab: SIDVocab | None = None) -> list[dict[str, Any]]:
    """Greedy constrained decoding of one SID per prompt (token-id lists). Returns per prompt
    ``{"sid": tuple, "think_tokens": [n per level], "cap_hits": int}`` in input order.

    ``vocab`` (built from ``tokenizer`` and ``trie`` when not given) may be passed to reuse it.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected {' | '.join(LAYOUTS)}")
    if vocab is None:
        vocab = SIDVocab.from_tokenizer(tokenizer, table=trie)
    decoded = greedy_decode(model, prompts, trie, vocab, reasoning=layout == "reasoning",
                            max_think_tokens=think_max_tokens,
                            min_think_tokens=min(1, think_max_tokens), batch_size=batch_size)
    return [{"sid": d.codes, "think_tokens": list(d.think_lengths), "cap_hits": d.cap_hits}
            for d in decoded]


def sid_accuracy(predicted: Sequence[tuple[int, ...]], targets: Sequence[tuple[int, ...]],
                 levels: int) -> dict[str, Any]:
    """Exact-match accuracy and per-level prefix accuracy (share with the first k codes right)."""
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions for {len(targets)} targets")
    n = len(targets)
    if n == 0:
        return {"n": 0, "exact_match": None, "prefix_accuracy": {}}
    hits = np.zeros(levels)
    for p, t in zip(predicted, targets):
        for k in range(levels):
            if tuple(p[:k + 1]) != tuple(t[:k + 1]):
                break
            hits[k] += 1
    return {"n": n, "exact_match": float(hits[-1] / n),
            "prefix_accuracy": {str(k + 1): float(hits[k] / n) for k in range(levels)}}


def evaluate_sids(model: Any, tokenizer: Any, trie: SIDTrie, prompts: Sequence[Sequence[int]],
                  targets: Sequence[tuple[int, ...]], *, layout: str, batch_size: int,
                  think_max_tokens: int, source_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Decode every prompt and score it against ``targets`` (each must be a catalog SID)."""
    for i, t in enumerate(targets):
        if t not in trie:
            sid = source_ids[i] if source_ids is not None else i
            raise ValueError(f"valid row {i} (source_id={sid}): target SID {t} is not a catalog "
                             f"item of the sid_table")
    start = time.perf_counter()
    decoded = constrained_decode(model, tokenizer, trie, prompts, layout=layout,
                                 batch_size=batch_size, think_max_tokens=think_max_tokens)
    seconds = time.perf_counter() - start
    report = sid_accuracy([d["sid"] for d in decoded], targets, trie.levels)
    think = [n for d in decoded for n in d["think_tokens"]]
    report.update({
        "layout": layout, "levels": trie.levels, "seconds": round(seconds, 3),
        "valid_item_rate": float(np.mean([d["sid"] in trie for d in decoded])) if decoded else None,
        "mean_think_tokens": float(np.mean(think)) if think else None,
        "think_cap_hits": int(sum(d["cap_hits"] for d in decoded)),
    })
    return report
