"""Constrained beam search over catalog SIDs (evaluation, ReRe rollouts) and greedy decoding.

Per batch of prompts: one prefill, then for each level k = 0 .. K-1

* reasoning models only (METHOD.md §4, step-wise beam search): every beam writes its thinking
  block greedily under the :class:`~.state_machine.StepMachine` rules (``<think>`` forced, no SID
  token / eos inside, ``</think>`` forced at ``max_think_tokens``); a beam whose block ended waits
  (masked cache holes) until the slowest beam of the batch is done;
* every beam is expanded by its trie children at level k, scored by cumulative SID log-prob
  (full-vocabulary log-softmax of the SID token; thinking tokens do not count), and the best
  ``num_beams`` continuations per prompt are kept; the KV cache is reordered to their parents.

The first level expands each prompt's single prefilled row to B beams (the cache is copied, the
prompt is never re-encoded; in plain mode the beams are branches of one cache row per prompt,
:mod:`~.tree`, so not even the cache is copied -- ``tree_decoding=False`` copies rows instead).
Every kept beam is a catalog prefix, so each prompt gets exactly
``min(num_beams, catalog size)`` complete, distinct catalog SIDs, best first.
:func:`greedy_decode` is the ``num_beams=1`` case; :func:`beam_sample` returns the G beams as an
RL :class:`~.types.Rollout` with ``beam_rank`` (ReRe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sapo_pipeline.decoding.buffers import (
    ResponseBuffer,
    build_rollout,
    concat_rollouts,
    reorder_rollout,
)
from sapo_pipeline.decoding.constraint import ConstraintIndex
from sapo_pipeline.decoding.sampler import pick_tokens
from sapo_pipeline.decoding.session import KVSession
from sapo_pipeline.decoding.state_machine import SID, MachineState, StepMachine
from sapo_pipeline.decoding.tree import open_session
from sapo_pipeline.decoding.types import Rollout, check_rollout_inputs
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.sid.catalog import SIDTrie

logger = logging.getLogger(__name__)
_NEG = float("-inf")


@dataclass
class BeamConfig:
    """Evaluation-time beam search; pass as ``beam_search(..., **dataclasses.asdict(cfg))``."""

    num_beams: int = field(default=10, metadata={"help": "Beams B (hits per prompt)."})
    reasoning: bool = field(
        default=False, metadata={"help": "Step-wise beam search with greedy thinking blocks "
                                         "(else plain SID tokens)."})
    max_think_tokens: int = field(
        default=64, metadata={"help": "Free tokens per thinking block; </think> is forced at it."})
    min_think_tokens: int = field(
        default=1, metadata={"help": "Free tokens a block needs before </think> may be chosen."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per batch (rows = B x it)."})
    tree_decoding: bool = field(
        default=True, metadata={"help": "Plain layout: beams as branches of one cache row."})

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.batch_size < 1:
            raise ValueError(f"BeamConfig: num_beams={self.num_beams} and batch_size="
                             f"{self.batch_size} must be >= 1")
        if self.max_think_tokens < 0 or not 0 <= self.min_think_tokens <= self.max_think_tokens:
            raise ValueError(f"BeamConfig: need 0 <= min_think_tokens <= max_think_tokens, got "
                             f"{self.min_think_tokens}, {self.max_think_tokens}")


@dataclass(frozen=True)
class BeamHit:
    """One beam: a catalog SID and its cumulative SID log-probability."""

    codes: tuple[int, ...]
    score: float
    tokens: tuple[int, ...] = ()  # response token ids (thinking blocks and SID tokens, no eos)


@dataclass(frozen=True)
class GreedyResult:
    """Greedy constrained decode of one prompt."""

    codes: tuple[int, ...]
    score: float  # sum of the SID tokens' log-probs
    tokens: tuple[int, ...]  # response token ids (no eos)
    text: str | None  # decoded response (None without a tokenizer in the vocab)
    think_lengths: tuple[int, ...]  # free tokens per block (reasoning; empty otherwise)
    cap_hits: int  # blocks closed by max_think_tokens


@dataclass
class _Beams:
    state: MachineState  # [p * B] rows, beams of prompt j at rows j*B .. j*B+B-1
    scores: torch.Tensor  # [p, B], -inf for padding beams
    buf: ResponseBuffer
    forwards: int
    prefill_seconds: float


def _machine(trie: SIDTrie, vocab: SIDVocab, reasoning: bool, max_think_tokens: int,
             min_think_tokens: int) -> StepMachine:
    return StepMachine(ConstraintIndex.get(trie, vocab), vocab, reasoning=reasoning,
                       max_think_tokens=max_think_tokens, min_think_tokens=min_think_tokens)


def _sid_logprobs(sess: KVSession, machine: StepMachine, st: MachineState, rows: torch.Tensor,
                  level: int, out: torch.Tensor) -> None:
    """``out[rows]`` = full-vocabulary log-probs of the level's SID tokens (-inf if no child)."""
    index = machine.index
    ids = index.level_ids[level]
    logits = sess.logits[rows]
    lp = logits[:, ids.clamp(min=0)] - torch.logsumexp(logits, -1, keepdim=True)
    ok = index.children_ok[st.node[rows]] & (ids >= 0)
    out[rows] = lp.masked_fill(~ok, _NEG)


def _think_then_score(sess: KVSession, machine: StepMachine, st: MachineState,
                      buf: ResponseBuffer, level: int, need_logprobs: bool) -> torch.Tensor:
    """Greedy thinking block for every row not yet at its SID choice; returns ``[n, C_max]``
    SID log-probs taken right after each row's ``</think>`` (or the prompt / previous SID)."""
    n = len(st)
    out = torch.full((n, machine.index.cmax), _NEG)
    ready = st.phase == SID
    if ready.any():
        _sid_logprobs(sess, machine, st, ready.nonzero().flatten(), level, out)
    while not bool((st.phase == SID).all()):
        moving = st.phase != SID
        con = machine.constraint(st)
        tok, logp = pick_tokens(sess.logits, machine, st, con, temperature=0.0,
                                need_logprobs=need_logprobs)
        r = moving.nonzero().flatten()
        buf.write(r, tok[r], logp[r], con.forced[r], con.step[r])
        machine.advance(st, tok, rows=moving)
        sess.step(tok, real=moving)
        newly = moving & (st.phase == SID)
        if newly.any():
            _sid_logprobs(sess, machine, st, newly.nonzero().flatten(), level, out)
    return out


def _exclusion(exclude: Sequence[Sequence[Sequence[int]]], levels: int) -> torch.Tensor:
    """``[p, H, K]`` long: each prompt's excluded SIDs, padded with rows of -1."""
    h = max((len(e) for e in exclude), default=0)
    out = torch.full((len(exclude), max(h, 1), levels), -1, dtype=torch.long)
    for j, sids in enumerate(exclude):
        if len(sids):
            t = torch.as_tensor([list(c) for c in sids], dtype=torch.long)
            if t.shape[1] != levels:
                raise ValueError(f"exclude: prompt {j} has a SID of {t.shape[1]} codes, the "
                                 f"catalog {levels}")
            out[j, :len(sids)] = t
    return out


def _ban_excluded(lp: torch.Tensor, st: MachineState, banned: torch.Tensor, width: int,
                  level: int) -> None:
    """At the last level: ``lp[r, c] = -inf`` where row r's prefix plus code c is one of its
    prompt's excluded SIDs (``banned`` ``[p, H, K]``, rows ``j * width ..`` of prompt j)."""
    mine = banned[torch.arange(len(st)) // width]  # [n, H, K]
    hit = (mine[:, :, 0] >= 0) & (mine[:, :, :level] == st.codes[:, None, :level]).all(-1)
    rows, slot = hit.nonzero(as_tuple=True)
    lp[rows, mine[rows, slot, level]] = _NEG


def _beam_chunk(model: Any, prompts: Sequence[Sequence[int]], machine: StepMachine,
                num_beams: int, rollout: bool = False, tree: bool = True,
                banned: torch.Tensor | None = None) -> _Beams:
    p, cmax, index = len(prompts), machine.index.cmax, machine.index
    sess = open_session(model, prompts, machine.pad_id, reserve=machine.max_response_tokens,
                        branches=num_beams, tree=tree and not machine.reasoning)
    st = machine.start(p)
    buf = ResponseBuffer(p, machine.max_response_tokens, machine.pad_id)
    scores = torch.zeros(p, 1)
    width = 1
    for k in range(machine.levels):
        lp = _think_then_score(sess, machine, st, buf, k, need_logprobs=rollout)
        if banned is not None and k == machine.levels - 1:
            _ban_excluded(lp, st, banned, width, k)
        total = (scores.reshape(-1, 1) + lp).reshape(p, width * cmax)
        kk = min(num_beams, width * cmax)
        top_v, top_i = total.topk(kk, dim=1)
        if kk < num_beams:
            top_v = torch.cat([top_v, torch.full((p, num_beams - kk), _NEG)], 1)
            top_i = torch.cat([top_i, torch.zeros((p, num_beams - kk), dtype=torch.long)], 1)
        parent = (torch.arange(p)[:, None] * width + top_i // cmax).reshape(-1)
        code = (top_i % cmax).reshape(-1)
        valid = (top_v > _NEG).reshape(-1)
        more = k + 1 < machine.levels or rollout
        if more:  # the cache is needed again only if another token is fed
            sess.select(parent)
        st = st.select(parent)
        buf.select(parent)
        node = st.node
        code = torch.where(valid, code, index.first_child[node])  # padding beams ride along
        tok = index.level_ids[k, code]
        taken = lp[parent].gather(1, code[:, None]).squeeze(1)
        rows = torch.arange(len(st))
        buf.write(rows, tok, taken, index.n_children[node] == 1,
                  torch.full_like(rows, k))
        machine.advance(st, tok)
        scores, width = top_v, num_beams
        if more:
            sess.step(tok)
    if rollout:  # beam_sample: eos log-prob too (one more forward)
        logits = sess.logits
        logp = logits[:, machine.eos_id] - torch.logsumexp(logits, -1)
        eos = torch.full((len(st),), machine.eos_id, dtype=torch.long)
        rows = torch.arange(len(st))
        buf.write(rows, eos, logp, torch.ones_like(rows, dtype=torch.bool),
                  torch.full_like(rows, machine.levels - 1))
        machine.advance(st, eos)
    return _Beams(st, scores, buf, sess.forwards, sess.prefill_seconds)


def _batches(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    if not prompts:
        return []
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty ({len(empty)} empty prompts)")
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def _eval_mode(model: Any) -> bool:
    was = model.training
    model.eval()
    return was


@torch.no_grad()
def beam_search(model: Any, prompts: Sequence[Sequence[int]], trie: SIDTrie, vocab: SIDVocab,
                num_beams: int = 10, *, reasoning: bool = False, max_think_tokens: int = 64,
                min_think_tokens: int = 1, batch_size: int = 16,
                tree_decoding: bool = True,
                exclude: Sequence[Sequence[Sequence[int]]] | None = None) -> list[list[BeamHit]]:
    """Top-``num_beams`` catalog SIDs per prompt, best first (see the module docstring).

    ``exclude`` (one list per prompt): SIDs that prompt's beams may not end in (e.g. its history
    items'); they are cut at the last level, so the beams are the best ``num_beams`` of the rest.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams={num_beams}: must be >= 1")
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError(f"exclude: {len(exclude)} lists for {len(prompts)} prompts")
    machine = _machine(trie, vocab, reasoning, max_think_tokens, min_think_tokens)
    out: list[list[BeamHit]] = [[] for _ in prompts]
    started = time.perf_counter()
    was = _eval_mode(model)
    try:
        for chunk in _batches(prompts, batch_size):
            banned = (None if exclude is None
                      else _exclusion([exclude[i] for i in chunk], machine.levels))
            beams = _beam_chunk(model, [prompts[i] for i in chunk], machine, num_beams,
                                tree=tree_decoding, banned=banned)
            scores = beams.scores.tolist()
            codes = beams.state.codes.tolist()
            for j, i in enumerate(chunk):
                out[i] = [BeamHit(tuple(codes[j * num_beams + b]), s,
                                  tuple(beams.buf.response(j * num_beams + b)))
                          for b, s in enumerate(scores[j]) if s > _NEG]
    finally:
        model.train(was)
    logger.info("beam_search: %d prompts, B=%d, reasoning=%s in %.2fs", len(prompts), num_beams,
                reasoning, time.perf_counter() - started)
    return out


@torch.no_grad()
def greedy_decode(model: Any, prompts: Sequence[Sequence[int]], trie: SIDTrie, vocab: SIDVocab,
                  *, reasoning: bool = False, max_think_tokens: int = 64,
                  min_think_tokens: int = 1, batch_size: int = 32,
                  tree_decoding: bool = True) -> list[GreedyResult]:
    """Greedy constrained decoding (beam search with one beam), one result per prompt."""
    machine = _machine(trie, vocab, reasoning, max_think_tokens, min_think_tokens)
    out: list[GreedyResult | None] = [None] * len(prompts)
    was = _eval_mode(model)
    try:
        for chunk in _batches(prompts, batch_size):
            beams = _beam_chunk(model, [prompts[i] for i in chunk], machine, 1,
                                tree=tree_decoding)
            st = beams.state
            for j, i in enumerate(chunk):
                toks = tuple(beams.buf.response(j))
                out[i] = GreedyResult(
                    codes=tuple(st.codes[j].tolist()), score=float(beams.scores[j, 0]),
                    tokens=toks, text=vocab.decode(toks) if vocab.tokenizer is not None else None,
                    think_lengths=tuple(st.think_lengths[j].tolist()) if reasoning else (),
                    cap_hits=int(st.cap_hits[j]))
    finally:
        model.train(was)
    return out  # type: ignore[return-value]


@torch.no_grad()
def beam_sample(model: Any, prompts: Sequence[Sequence[int]], targets: Any, trie: SIDTrie,
                vocab: SIDVocab, num_beams: int = 16, *, reasoning: bool = False,
                max_think_tokens: int = 64, min_think_tokens: int = 1,
                batch_size: int = 8, tree_decoding: bool = True) -> Rollout:
    """ReRe-style group: the ``num_beams`` constrained beams of each prompt as a Rollout.

    Rows ``g*B .. g*B+B-1`` answer prompt g, ``beam_rank`` 0 = best beam. Tokens the policy
    chose (greedy thinking text, SID tokens with >= 2 children) are marked sampled; ``<think>``,
    ``</think>`` at the cap, single-child SID tokens and eos are forced. ``old_logprobs`` are
    full-vocabulary log-probs at temperature 1 (eos included: one extra forward pass).
    """
    if num_beams < 1:
        raise ValueError(f"num_beams={num_beams}: must be >= 1")
    if len(trie) < num_beams:
        raise ValueError(f"beam_sample: the catalog has {len(trie)} items, fewer than "
                         f"num_beams={num_beams}: a group would be short")
    tgt = check_rollout_inputs(prompts, targets, trie)
    machine = _machine(trie, vocab, reasoning, max_think_tokens, min_think_tokens)
    started = time.perf_counter()
    parts = []
    was = _eval_mode(model)
    try:
        for chunk in _batches(prompts, batch_size):
            beams = _beam_chunk(model, [prompts[i] for i in chunk], machine, num_beams,
                                rollout=True, tree=tree_decoding)
            local = torch.arange(len(chunk)).repeat_interleave(num_beams)
            part = build_rollout([prompts[i] for i in chunk], local, beams.buf, beams.state.codes,
                               tgt[torch.as_tensor(chunk)][local],
                               beam_rank=torch.arange(num_beams).repeat(len(chunk)),
                               stats={"prompts": float(len(chunk)), "rows": float(len(local)),
                                      "forwards": float(beams.forwards),
                                      "prefill_seconds": beams.prefill_seconds})
            part.group_index = torch.as_tensor(chunk, dtype=torch.long)[local]
            parts.append(part)
    finally:
        model.train(was)
    result = concat_rollouts(parts, vocab.pad_id)
    result = reorder_rollout(result, torch.argsort(result.group_index, stable=True))
    result.stats["seconds"] = time.perf_counter() - started
    result.stats["exact_match_rate"] = float(
        (result.sid_codes == result.target_codes).all(1).float().mean())
    result.validate()
    return result
