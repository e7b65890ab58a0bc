"""Group sampling for RL: G constrained samples per prompt from one shared prefill.

:func:`sample_groups` takes P prompts (token id lists of any lengths), prefills them once per
batch (left-padded), expands each prompt's KV cache to G rows, then samples token by token under
the :class:`~.state_machine.StepMachine` rules: forced tokens are taken as they are, free thinking
text and SID choices are sampled with temperature and top-p *after* the constraint mask. For every
response token it records the full-vocabulary log-prob of the taken token (unmasked, untruncated
distribution; at temperature 1 unless ``logprobs_at_temperature``), whether it was forced, and its
step id, and returns a validated :class:`~.types.Rollout` whose rows are grouped by prompt
(rows ``g*G .. g*G+G-1`` answer prompt ``g``). Rows that finish leave the batch (cache rows
dropped once fewer than ``compact_below`` of the batch are still running). In the plain layout
the G samples are branches of one cache row per prompt (:mod:`~.tree`), so the prompt's cache
is not even copied.

Deterministic for a fixed ``torch.Generator`` state (or ``SamplerConfig.seed``), inputs and
thread settings. With ``prompt_seeds`` (one per prompt) every draw instead takes a counter-based
uniform, a hash of (prompt seed, row in group, response position) (:func:`counter_uniforms`):
a prompt's samples then depend on its seed and the model only, not on which other prompts share
the call, their order or the batch size -- what lets RL split one step's prompts over several
processes and still train the same model as one process does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from sapo_pipeline.decoding.buffers import (
    ResponseBuffer,
    build_rollout,
    concat_rollouts,
    reorder_rollout,
)
from sapo_pipeline.decoding.constraint import ConstraintIndex
from sapo_pipeline.decoding.state_machine import Constraint, MachineState, StepMachine
from sapo_pipeline.decoding.tree import TreeSession, open_session
from sapo_pipeline.decoding.types import Rollout, check_rollout_inputs
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.sid.catalog import SIDTrie

logger = logging.getLogger(__name__)
_NEG = float("-inf")


@dataclass
class SamplerConfig:
    """How RL rollouts are sampled."""

    group_size: int = field(default=16, metadata={"help": "Responses per prompt (G)."})
    reasoning: bool = field(
        default=True, metadata={"help": "Step-aligned layout with thinking blocks (else plain "
                                        "SID tokens then eos)."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature (0 = greedy), applied after the "
                                       "constraint mask."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass in (0, 1]."})
    think_temperature: float | None = field(
        default=None, metadata={"help": "Temperature of the free thinking text (null: "
                                        "`temperature`; 0: greedy blocks, as the step-wise "
                                        "beam search writes them, so the samples differ in "
                                        "their SID choices and what follows from them)."})
    max_think_tokens: int = field(
        default=64, metadata={"help": "Free tokens per thinking block; </think> is forced at it."})
    min_think_tokens: int = field(
        default=1, metadata={"help": "Free tokens a block needs before </think> may be chosen "
                                     "(1: blocks are never empty, as the layout requires)."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per prefill batch (rows = batch_size * G)."})
    compact_below: float = field(
        default=0.75, metadata={"help": "Drop finished rows from the KV cache once fewer than "
                                        "this share of the batch is still running (0: never)."})
    logprobs_at_temperature: bool = field(
        default=False, metadata={"help": "Record log-probs of softmax(logits / temperature) "
                                         "instead of temperature 1 (match the RL loss)."})
    seed: int = field(default=0, metadata={"help": "Seed of the generator when none is given."})
    tree_decoding: bool = field(
        default=True, metadata={"help": "Plain layout: decode the G samples of a prompt as branches "
                                        "of one cache row (decoding.tree) instead of G copies."})

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"SamplerConfig.group_size={self.group_size}: must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"SamplerConfig.temperature={self.temperature}: must be >= 0")
        if self.think_temperature is not None and self.think_temperature < 0:
            raise ValueError(f"SamplerConfig.think_temperature={self.think_temperature}: must "
                             "be >= 0 (or null)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplerConfig.top_p={self.top_p}: must be in (0, 1]")
        if self.max_think_tokens < 0 or not 0 <= self.min_think_tokens <= self.max_think_tokens:
            raise ValueError(f"SamplerConfig: need 0 <= min_think_tokens <= max_think_tokens, "
                             f"got {self.min_think_tokens}, {self.max_think_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"SamplerConfig.batch_size={self.batch_size}: must be >= 1")
        if not 0.0 <= self.compact_below <= 1.0:
            raise ValueError(f"SamplerConfig.compact_below={self.compact_below}: must be in "
                             f"[0, 1]")
        if self.logprobs_at_temperature and self.temperature == 0:
            raise ValueError("SamplerConfig: logprobs_at_temperature needs temperature > 0")


def _top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of highest scores whose softmax mass reaches ``top_p``."""
    sorted_s, idx = scores.sort(dim=-1, descending=True)
    probs = sorted_s.softmax(-1)
    drop = (probs.cumsum(-1) - probs) >= top_p
    drop[:, 0] = False
    return scores.scatter(-1, idx, sorted_s.masked_fill(drop, _NEG))


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for int64 ``x`` in [0, 2^32) without int64 overflow (two 16-bit
    halves of ``c``)."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (Wellons' "lowbias32") on int64 tensors
    holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def row_keys(prompt_seeds: Sequence[int], group_size: int) -> torch.Tensor:
    """int64 ``[P * G]``: the 32-bit stream key of each row (prompt-major, as the rollout's rows)
    from its prompt's seed (any integer) and its index in the group."""
    lo = torch.tensor([int(s) & _MASK32 for s in prompt_seeds], dtype=torch.long)
    hi = torch.tensor([(int(s) >> 32) & _MASK32 for s in prompt_seeds], dtype=torch.long)
    base = mix32(lo ^ mix32(hi ^ 0x9E3779B9))
    j = torch.arange(group_size, dtype=torch.long)
    return mix32(base.repeat_interleave(group_size) ^ mix32(j.repeat(len(prompt_seeds))
                                                             + 0x632BE5AB))


def counter_uniforms(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in [0, 1), one per row: a hash of the row's key and its counter (the
    response position it is drawing), with 24 bits as ``torch.rand`` has."""
    h = mix32(keys ^ mix32((counters & _MASK32) ^ 0x85EBCA6B))
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def draw(scores: torch.Tensor, temperature: float, top_p: float,
         generator: torch.Generator | None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One index per row of masked scores: argmax at temperature 0, else a sample.

    Sampling inverts the CDF with one uniform per row (``uniforms`` if given, else drawn from
    ``generator``) -- far cheaper on CPU than ``torch.multinomial``. A zero-mass entry can never
    be drawn; the float32 running sum gives each entry its probability up to one rounding of the
    partial sum (< 1e-7 absolute).
    """
    if temperature == 0:  # max's indices: the first maximum, as argmax, ~2.7x faster on CPU
        return scores.max(-1).indices
    if temperature != 1.0:
        scores = scores / temperature
    if top_p < 1.0:
        scores = _top_p(scores, top_p)
    cum = (scores - scores.amax(-1, keepdim=True)).exp_().cumsum_(-1)  # unnormalised CDF
    total = cum[:, -1:]
    # strictly below the total, so the first entry whose running sum exceeds it has mass > 0
    u = (torch.rand(total.shape, generator=generator) if uniforms is None
         else uniforms.reshape(total.shape).to(total.dtype))
    r = torch.minimum(u * total,
                      torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cum, r, right=True).squeeze(1)


def pick_tokens(logits: torch.Tensor, machine: StepMachine, st: MachineState, con: Constraint,
                *, temperature: float = 1.0, top_p: float = 1.0,
                generator: torch.Generator | None = None, logprob_temperature: float = 1.0,
                need_logprobs: bool = True, uniforms: torch.Tensor | None = None,
                think_temperature: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token of every row under the constraint, and its full-vocabulary log-prob (zeros
    when ``need_logprobs`` is False). ``uniforms`` (one per row): the draws' uniforms instead of
    ``generator``'s. ``think_temperature``: the free rows' temperature (default ``temperature``).

    Forced rows take their forced token; free rows draw from the vocabulary minus the banned ids
    (</think> only when ``close_ok``); SID-choice rows draw among their trie children.
    """
    tok = con.forced_token.clone()
    free = con.free.nonzero().flatten()
    if len(free):
        every = len(free) == len(tok)  # common while thinking: no row gather needed
        t_free = temperature if think_temperature is None else think_temperature
        if t_free == 0 and machine.greedy_views:  # greedy: no masked copy of the logits
            tok[free] = machine.greedy_think(logits, free, con.close_ok[free])
        else:
            s = (logits if every else logits[free]) + machine.think_bias(logits.shape[1])
            s[:, machine.close_id].masked_fill_(~con.close_ok[free], _NEG)
            tok[free] = draw(s, t_free, top_p, generator,
                             None if uniforms is None else uniforms[free])
    choice = con.choice.nonzero().flatten()
    if len(choice):
        ids, ok = machine.candidates(st, choice)
        s = logits[choice].gather(1, ids).masked_fill(~ok, _NEG)
        j = draw(s, temperature, top_p, generator,
                 None if uniforms is None else uniforms[choice])
        tok[choice] = ids.gather(1, j[:, None]).squeeze(1)
    if not need_logprobs:
        return tok, torch.zeros(tok.shape)
    scaled = logits if logprob_temperature == 1.0 else logits / logprob_temperature
    logp = scaled.gather(1, tok[:, None]).squeeze(1) - torch.logsumexp(scaled, -1)
    return tok, logp


def _finalise_stats(stats: dict[str, float], started: float) -> dict[str, float]:
    rows = max(stats.get("rows", 0.0), 1.0)
    stats["seconds"] = time.perf_counter() - started
    stats["mean_response_tokens"] = stats.get("response_tokens", 0.0) / rows
    stats["exact_match_rate"] = stats.get("exact_matches", 0.0) / rows
    blocks = stats.get("think_blocks", 0.0)
    stats["think_cap_rate"] = stats.get("think_cap_hits", 0.0) / blocks if blocks else 0.0
    stats["ms_per_prompt"] = 1000.0 * stats["seconds"] / max(stats.get("prompts", 0.0), 1.0)
    return stats


@torch.no_grad()
def sample_groups(model: Any, prompts: Sequence[Sequence[int]], targets: Any, trie: SIDTrie,
                  vocab: SIDVocab, config: SamplerConfig | None = None, *,
                  generator: torch.Generator | None = None,
                  prompt_seeds: Sequence[int] | None = None, **overrides: Any) -> Rollout:
    """G constrained samples for each prompt as a :class:`Rollout` (see the module docstring).

    ``targets`` is ``[P, K]``: each prompt's target SID (must be catalog SIDs). ``overrides``
    replace fields of ``config`` (e.g. ``group_size=4``). ``prompt_seeds``: one seed per prompt
    (counter-based draws, independent of the batch; ``generator`` is then unused).
    """
    cfg = replace(config or SamplerConfig(), **overrides) if overrides else (config
                                                                            or SamplerConfig())
    tgt = check_rollout_inputs(prompts, targets, trie)
    machine = StepMachine(ConstraintIndex.get(trie, vocab), vocab, reasoning=cfg.reasoning,
                          max_think_tokens=cfg.max_think_tokens,
                          min_think_tokens=cfg.min_think_tokens)
    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    keys = None
    if prompt_seeds is not None:
        if len(prompt_seeds) != len(prompts):
            raise ValueError(f"sample_groups: {len(prompt_seeds)} prompt seeds for "
                             f"{len(prompts)} prompts")
        keys = row_keys(prompt_seeds, cfg.group_size).view(len(prompts), cfg.group_size)
    started = time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    was_training = model.training
    model.eval()
    try:
        parts = [_sample_chunk(model, prompts, tgt, order[s:s + cfg.batch_size], machine, cfg,
                               gen, keys) for s in range(0, len(order), cfg.batch_size)]
    finally:
        model.train(was_training)
    rollout = concat_rollouts(parts, vocab.pad_id)
    rollout = reorder_rollout(rollout, torch.argsort(rollout.group_index, stable=True))
    rollout.stats = _finalise_stats(rollout.stats, started)
    rollout.stats["logprob_temperature"] = cfg.temperature if cfg.logprobs_at_temperature else 1.0
    rollout.validate()
    logger.info("sample_groups: %d prompts x %d in %.2fs (%.1f ms/prompt, %.1f tokens/row)",
                len(prompts), cfg.group_size, rollout.stats["seconds"], rollout.stats["ms_per_prompt"],
                rollout.stats["mean_response_tokens"])
    return rollout


def _sample_chunk(model: Any, prompts: Sequence[Sequence[int]], targets: torch.Tensor,
                  chunk: list[int], machine: StepMachine, cfg: SamplerConfig,
                  gen: torch.Generator, keys: torch.Tensor | None = None) -> Rollout:
    g, p = cfg.group_size, len(chunk)
    row_key = None if keys is None else keys[torch.as_tensor(chunk)].flatten()
    n = p * g
    sess = open_session(model, [prompts[i] for i in chunk], machine.pad_id,
                        reserve=machine.max_response_tokens, branches=g,
                        tree=cfg.tree_decoding and not cfg.reasoning)
    sess.select(torch.arange(p).repeat_interleave(g))
    st = machine.start(n)
    rows = torch.arange(n)
    buf = ResponseBuffer(n, machine.max_response_tokens, machine.pad_id)
    codes = torch.full((n, machine.levels), -1, dtype=torch.long)
    blocks = caps = 0
    lp_temp = cfg.temperature if cfg.logprobs_at_temperature else 1.0
    while True:
        con = machine.constraint(st)
        u = None if row_key is None else counter_uniforms(row_key[rows], buf.length[rows])
        tok, logp = pick_tokens(sess.logits, machine, st, con, temperature=cfg.temperature,
                                top_p=cfg.top_p, generator=gen, logprob_temperature=lp_temp,
                                uniforms=u, think_temperature=cfg.think_temperature)
        live = con.step >= 0
        buf.write(rows[live], tok[live], logp[live], con.forced[live], con.step[live])
        machine.advance(st, tok)
        alive = ~st.done
        finished = live & ~alive
        if finished.any():
            codes[rows[finished]] = st.codes[finished]
            blocks += int((st.think_lengths[finished] >= 0).sum())
            caps += int(st.cap_hits[finished].sum())
        if not alive.any():
            break
        if int(alive.sum()) < cfg.compact_below * len(st) and not isinstance(sess, TreeSession):
            keep = alive.nonzero().flatten()
            sess.select(keep)
            st, rows, tok, alive = st.select(keep), rows[keep], tok[keep], alive[keep]
        sess.step(tok, real=alive)
    local = torch.arange(p).repeat_interleave(g)
    tgt = targets[torch.as_tensor(chunk)][local]
    stats = {"prompts": float(p), "rows": float(n), "forwards": float(sess.forwards),
             "prefill_seconds": sess.prefill_seconds, "step_seconds": sess.step_seconds,
             "response_tokens": float(buf.length.sum()),
             "sampled_tokens": float(((~buf.forced) & (buf.steps >= 0)).sum()),
             "exact_matches": float((codes == tgt).all(1).sum()),
             "think_blocks": float(blocks), "think_cap_hits": float(caps)}
    rollout = build_rollout([prompts[i] for i in chunk], local, buf, codes, tgt, stats=stats)
    rollout.group_index = torch.as_tensor(chunk, dtype=torch.long)[local]
    return rollout
