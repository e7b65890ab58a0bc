"""Valid-split SID accuracy: greedy, trie-constrained generation of the next item's SID.

Two response layouts (``SidEvalConfig.layout``):

* ``sid`` (Stage 1, task history SIDs -> next SID): the K SID tokens are generated directly
  after the prompt; at level k only the tokens of the trie children of the prefix generated so
  far are allowed.
* ``reasoning`` (Stage 2): per level k, ``<think>`` is forced, the block is generated greedily
  (SID tokens, eos and ``<think>`` masked) until the model emits ``</think>`` or
  ``think_max_tokens`` free tokens were generated (then ``</think>`` is forced), then the SID
  token of level k is chosen among the trie children.

Never unconstrained: allowed codes come from :meth:`SIDTrie.children`, which raises ``KeyError``
for a prefix that is not in the catalog, and a trie code without a single-token spelling in the
tokenizer raises ``ValueError``. A target SID that is not a catalog item is an error too.

Prompts are decoded in batches (sorted by length, left-padded) with a KV cache: one forward pass
over the prompts, then one single-token pass per generated position.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sapo_pipeline.model.tokenizer import THINK_CLOSE, THINK_OPEN
from sapo_pipeline.sid.catalog import SIDTrie, parse_sid, sid_token

logger = logging.getLogger(__name__)

_SID_TOKEN_RE = re.compile(r"<[a-z]_(?:0|[1-9][0-9]*)>")


def target_sid(response: str, where: str = "response") -> tuple[int, ...]:
    """The SID spelled by the SID tokens of ``response``, in order (think text ignored)."""
    tokens = _SID_TOKEN_RE.findall(response)
    if not tokens:
        raise ValueError(f"{where}: no SID token in {response[:80]!r}")
    return parse_sid("".join(tokens))


class SIDVocab:
    """Token ids of every SID code of a trie, per level; checks they are single tokens."""

    def __init__(self, tokenizer: Any, trie: SIDTrie) -> None:
        self.levels = trie.levels
        codes: list[set[int]] = [set() for _ in range(self.levels)]
        for sid in trie.sids():
            for level, code in enumerate(sid):
                codes[level].add(code)
        self.table: list[dict[int, int]] = []
        bad = []
        unk = tokenizer.unk_token_id
        for level in range(self.levels):
            row = {}
            for code in sorted(codes[level]):
                tok = sid_token(level, code)
                ids = tokenizer.encode(tok, add_special_tokens=False)
                if len(ids) != 1 or ids[0] == unk:
                    bad.append(f"{tok} -> {ids}")
                else:
                    row[code] = ids[0]
            self.table.append(row)
        if bad:
            raise ValueError(f"{len(bad)} catalog SID tokens are not single tokens of the "
                             f"tokenizer: {bad[:10]}")
        self.all_ids = sorted({i for row in self.table for i in row.values()})
        self.code_of = [{i: c for c, i in row.items()} for row in self.table]

    def allowed(self, trie: SIDTrie, prefix: tuple[int, ...]) -> tuple[list[int], list[int]]:
        """(codes, token ids) that may follow ``prefix``; KeyError for an unknown prefix."""
        codes = trie.children(prefix).tolist()
        level = len(prefix)
        if level >= self.levels:
            raise ValueError(f"prefix {prefix} is already a complete SID")
        try:
            return codes, [self.table[level][c] for c in codes]
        except KeyError as exc:  # pragma: no cover - SIDVocab is built from the same trie
            raise ValueError(f"code {exc} of level {level} has no token") from None


class _Row:
    """Decoding state of one prompt."""

    __slots__ = ("cap_hits", "phase", "prefix", "think_len", "think_tokens")

    def __init__(self, reasoning: bool) -> None:
        self.prefix: tuple[int, ...] = ()
        self.phase = "open" if reasoning else "sid"
        self.think_len = 0
        self.think_tokens: list[int] = []
        self.cap_hits = 0


@torch.inference_mode()
def constrained_decode(model: Any, tokenizer: Any, trie: SIDTrie, prompts: Sequence[Sequence[int]],
                       *, layout: str = "sid", batch_size: int = 32,
                       think_max_tokens: int = 48) -> list[dict[str, Any]]:
    """Greedy constrained decoding of one SID per prompt (token-id lists). Returns per prompt
    ``{"sid": tuple, "think_tokens": [n per level], "cap_hits": int}`` in input order."""
    if layout not in ("sid", "reasoning"):
        raise ValueError(f"layout={layout!r}: expected sid | reasoning")
    reasoning = layout == "reasoning"
    vocab = SIDVocab(tokenizer, trie)
    open_id = close_id = None
    think_block = None
    if reasoning:
        open_id, close_id = (tokenizer.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE))
        banned = [*vocab.all_ids, open_id, tokenizer.eos_token_id]
        if tokenizer.pad_token_id is not None:
            banned.append(tokenizer.pad_token_id)
        think_block = torch.tensor(sorted(set(banned)), dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows = _decode_batch(model, [prompts[i] for i in chunk], trie, vocab, reasoning, pad,
                             open_id, close_id, think_block, think_max_tokens, device)
        for i, row in zip(chunk, rows):
            results[i] = {"sid": row.prefix, "think_tokens": row.think_tokens,
                          "cap_hits": row.cap_hits}
    model.train(was_training)
    return results  # type: ignore[return-value]


def _decode_batch(model, prompts, trie, vocab, reasoning, pad, open_id, close_id, think_block,
                  cap, device) -> list[_Row]:
    n, width = len(prompts), max(len(p) for p in prompts)
    if min(len(p) for p in prompts) == 0:
        raise ValueError("constrained_decode: empty prompt")
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, p in enumerate(prompts):  # left padding
        ids[r, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[r, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                logits_to_keep=1)
    past, logits = out.past_key_values, out.logits[:, -1]
    next_pos = pos[:, -1] + 1
    rows = [_Row(reasoning) for _ in range(n)]
    while True:
        chosen = _choose(rows, logits, trie, vocab, open_id, close_id, think_block, cap, pad)
        if chosen is None:  # every row finished
            break
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=chosen.to(device)[:, None], attention_mask=mask,
                    position_ids=next_pos[:, None], past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    return rows


def _choose(rows: list[_Row], logits: torch.Tensor, trie: SIDTrie, vocab: SIDVocab,
            open_id, close_id, think_block, cap: int, pad: int) -> torch.Tensor | None:
    """Pick each row's next token and advance its state; None when every row finished."""
    scores = logits.float().cpu()
    chosen = torch.full((len(rows),), pad, dtype=torch.long)
    active = False
    for r, row in enumerate(rows):
        if row.phase == "done":
            continue
        active = True
        if row.phase == "open":
            chosen[r] = open_id
            row.phase, row.think_len = "think", 0
        elif row.phase == "think":
            if row.think_len >= cap:
                chosen[r] = close_id
                row.cap_hits += 1
            else:
                s = scores[r].clone()
                s[think_block] = -torch.inf
                chosen[r] = int(s.argmax())
            if int(chosen[r]) == close_id:
                row.think_tokens.append(row.think_len)
                row.phase = "sid"
            else:
                row.think_len += 1
        else:  # sid
            codes, token_ids = vocab.allowed(trie, row.prefix)
            best = int(scores[r, token_ids].argmax())
            chosen[r] = token_ids[best]
            row.prefix = (*row.prefix, codes[best])
            if len(row.prefix) == vocab.levels:
                row.phase = "done"
            elif think_block is not None:
                row.phase = "open"
    if not active:
        return None
    if all(row.phase == "done" for row in rows):
        # the last SID tokens need no forward pass of their own
        return None
    return chosen


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
