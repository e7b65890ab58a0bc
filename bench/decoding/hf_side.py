"""The transformers ``generate`` side of the decoding benchmark (baseline, not library code).

Prefix functions answer "which tokens may come next" for one row from its generated tokens,
memoised per generated prefix and returning cached tensors, so the baseline pays only what the
``prefix_allowed_tokens_fn`` API itself costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sapo_pipeline.decoding import SIDVocab, left_pad
from sapo_pipeline.sid.catalog import SIDTrie


def _chunks(prompts: Sequence[Sequence[int]], size: int) -> list[list[int]]:
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # as ours does
    return [order[s:s + size] for s in range(0, len(order), size)]


def _children_ids(vocab: SIDVocab, trie: SIDTrie, cache: dict, prefix: tuple[int, ...]
                  ) -> torch.Tensor:
    ids = cache.get(prefix)
    if ids is None:
        ids = vocab.level_ids[len(prefix)][torch.tensor(trie.children(prefix).tolist())]
        cache[prefix] = ids
    return ids


def plain_prefix_fn(vocab: SIDVocab, trie: SIDTrie, width: int) -> Callable:
    """K SID tokens along the trie, then eos, then pad."""
    kids: dict = {}
    eos, pad = torch.tensor([vocab.eos_id]), torch.tensor([vocab.pad_id])

    def fn(batch_id: int, sent: torch.Tensor) -> torch.Tensor:
        gen = sent[width:].tolist()
        if len(gen) < vocab.levels:
            prefix = tuple(vocab.code_of(t)[1] for t in gen)
            return _children_ids(vocab, trie, kids, prefix)
        return eos if len(gen) == vocab.levels else pad

    return fn


def _think_tokens(vocab: SIDVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids allowed inside a thinking block: without and with ``</think>``."""
    ok = torch.ones(vocab.vocab_size, dtype=torch.bool)
    ok[vocab.banned_in_think()] = False
    ok[vocab.think_close_id] = False
    free = ok.nonzero().flatten()
    return free, torch.cat([free, torch.tensor([vocab.think_close_id])])


def reasoning_prefix_fn(vocab: SIDVocab, trie: SIDTrie, width: int, cap: int,
                        min_think: int = 1) -> Callable:
    """The step-aligned layout as a Python state machine, memoised per generated prefix."""
    free, free_close = _think_tokens(vocab)
    one = {t: torch.tensor([t]) for t in (vocab.think_open_id, vocab.think_close_id,
                                          vocab.eos_id, vocab.pad_id)}
    kids: dict = {}
    memo: dict[tuple[int, ...], tuple] = {(): ("open", 0, (), 0)}

    def step(s: tuple, tok: int) -> tuple:
        phase, level, prefix, n = s
        if phase == "open":
            return ("think", level, prefix, 0)
        if phase == "think":
            return ("sid", level, prefix, n) if tok == vocab.think_close_id else (
                "think", level, prefix, n + 1)
        if phase == "sid":
            prefix = (*prefix, vocab.code_of(tok)[1])
            return ("eos" if level + 1 == vocab.levels else "open", level + 1, prefix, 0)
        return ("done", level, prefix, 0)

    def state(gen: tuple[int, ...]) -> tuple:
        s = memo.get(gen)
        if s is None:
            s = step(state(gen[:-1]), gen[-1])
            memo[gen] = s
        return s

    def fn(batch_id: int, sent: torch.Tensor) -> torch.Tensor:
        phase, _, prefix, n = state(tuple(sent[width:].tolist()))
        if phase == "open":
            return one[vocab.think_open_id]
        if phase == "think":
            if n >= cap:
                return one[vocab.think_close_id]
            return free_close if n >= min_think else free
        if phase == "sid":
            return _children_ids(vocab, trie, kids, prefix)
        return one[vocab.eos_id] if phase == "eos" else one[vocab.pad_id]

    return fn


@torch.no_grad()
def hf_beam(model: Any, prompts: Sequence[Sequence[int]], vocab: SIDVocab, trie: SIDTrie,
            num_beams: int, max_new_tokens: int, batch: int) -> list[list[tuple[int, ...]]]:
    """Top-B SIDs per prompt from ``generate`` beam search, HF's order (best first)."""
    out: list[list[tuple[int, ...]]] = [[] for _ in prompts]
    for chunk in _chunks(prompts, batch):
        ids, mask = (t.to(model.device) for t in left_pad([prompts[i] for i in chunk],
                                                           vocab.pad_id))
        width = ids.shape[1]
        seq = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams,
                             num_return_sequences=num_beams, do_sample=False,
                             max_new_tokens=max_new_tokens,
                             prefix_allowed_tokens_fn=plain_prefix_fn(vocab, trie, width),
                             pad_token_id=vocab.pad_id, eos_token_id=vocab.eos_id)
        gen = seq[:, width:width + vocab.levels].tolist()
        for j, i in enumerate(chunk):
            out[i] = [tuple(vocab.code_of(t)[1] for t in row)
                      for row in gen[j * num_beams:(j + 1) * num_beams]]
    return out


@torch.no_grad()
def hf_sample(model: Any, prompts: Sequence[Sequence[int]], vocab: SIDVocab, group: int,
              max_new_tokens: int, fn_factory: Callable[[int], Callable], batch: int,
              logprobs: bool = False) -> dict[str, float]:
    """``generate(do_sample=True, num_return_sequences=G)``; with ``logprobs`` also the
    full-vocabulary log-probs of the sampled tokens from ``output_logits``."""
    tokens = rows = 0
    for chunk in _chunks(prompts, batch):
        ids, mask = (t.to(model.device) for t in left_pad([prompts[i] for i in chunk],
                                                           vocab.pad_id))
        width = ids.shape[1]
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                             num_return_sequences=group, max_new_tokens=max_new_tokens,
                             top_k=0, top_p=1.0, temperature=1.0,
                             prefix_allowed_tokens_fn=fn_factory(width),
                             pad_token_id=vocab.pad_id, eos_token_id=vocab.eos_id,
                             return_dict_in_generate=logprobs, output_logits=logprobs)
        seq = out.sequences if logprobs else out
        gen = seq[:, width:]
        if logprobs:
            logits = torch.stack(out.logits, 1).float()
            _ = logits.log_softmax(-1).gather(2, gen[:, :, None]).squeeze(2)
        eos_at = (gen == vocab.eos_id).int().argmax(1)
        tokens += int((eos_at + 1).sum())
        rows += gen.shape[0]
    return {"mean_response_tokens": tokens / max(rows, 1)}


class _StopAfter:
    """Per-row stopping criterion: a row is done once its last token is ``token``."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return input_ids[:, -1] == self.token


@torch.no_grad()
def hf_stepwise_beam(model: Any, prompts: Sequence[Sequence[int]], vocab: SIDVocab,
                     trie: SIDTrie, num_beams: int, cap: int, batch: int,
                     min_think: int = 1) -> list[list[tuple[int, ...]]]:
    """Step-wise beam search (METHOD.md §4) written on top of ``generate``, as a user would:
    per level, one greedy ``generate`` call writes every beam's thinking block under the layout
    (``prefix_allowed_tokens_fn``: ``<think>`` forced, no SID / special tokens inside, ``</think>``
    after ``min_think`` tokens, forced at ``cap``; a per-row stopping criterion at ``</think>``),
    then one forward pass over each beam scores the level's trie children (full-vocabulary
    log-softmax), and the best ``num_beams`` per prompt are kept. Same algorithm as
    ``decoding.beam_search(reasoning=True)``, so the top-B sets should agree."""
    from transformers import StoppingCriteriaList

    free, free_close = _think_tokens(vocab)
    one = {t: torch.tensor([t]) for t in (vocab.think_open_id, vocab.think_close_id,
                                          vocab.pad_id)}
    out: list[list[tuple[int, ...]]] = [[] for _ in prompts]
    for chunk in _chunks(prompts, batch):
        # beams: (prompt index, response tokens, score, SID prefix)
        beams = [(i, [], 0.0, ()) for i in chunk]
        for level in range(vocab.levels):
            seqs = [list(prompts[i]) + toks for i, toks, _, _ in beams]
            ids, mask = (t.to(model.device) for t in left_pad(seqs, vocab.pad_id))
            width = ids.shape[1]

            def fn(batch_id: int, sent: torch.Tensor, width: int = width) -> torch.Tensor:
                gen = sent[width:]
                if len(gen) == 0:
                    return one[vocab.think_open_id]
                if int(gen[-1]) in (vocab.think_close_id, vocab.pad_id):
                    return one[vocab.pad_id]
                n = len(gen) - 1
                if n >= cap:
                    return one[vocab.think_close_id]
                return free_close if n >= min_think else free

            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 num_beams=1, max_new_tokens=cap + 2,
                                 prefix_allowed_tokens_fn=fn,
                                 stopping_criteria=StoppingCriteriaList(
                                     [_StopAfter(vocab.think_close_id)]),
                                 pad_token_id=vocab.pad_id, eos_token_id=vocab.eos_id)
            blocks = []
            for row in gen[:, width:].tolist():
                end = row.index(vocab.think_close_id) + 1
                blocks.append(row[:end])
            full = [s + b for s, b in zip(seqs, blocks)]
            ids, mask = (t.to(model.device) for t in left_pad(full, vocab.pad_id))
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                           logits_to_keep=1).logits[:, -1].float()
            lp = logits.log_softmax(-1).cpu()  # one copy, not one per candidate
            cand: dict[int, list] = {}
            for r, (i, toks, score, prefix) in enumerate(beams):
                for code in trie.children(prefix).tolist():
                    tid = int(vocab.level_ids[level][code])
                    cand.setdefault(i, []).append(
                        (i, toks + blocks[r] + [tid], score + float(lp[r, tid]),
                         (*prefix, code)))
            beams = []
            for i in chunk:
                beams += sorted(cand[i], key=lambda b: -b[2])[:num_beams]
        for i, _, _, prefix in beams:
            out[i].append(prefix)
    return out
