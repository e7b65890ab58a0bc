"""Where rollouts come from: the :class:`RolloutSource` protocol the RL trainer consumes.

A source turns P prompts into a :class:`~sapo_pipeline.decoding.types.Rollout` of ``P * G``
responses: ``group_index`` numbers the prompts 0..P-1 in the order given, ``target_codes``
repeats each prompt's target. SID tokens are trie-constrained; tokens the decoder forces are
marked out of ``sampled_mask``. Beam sources (ReRe) fill ``beam_rank``.

A source must be deterministic for a given ``seed`` (the trainer passes a seed derived from
``(cfg.seed, step)``), which is what makes a resumed run equal an uninterrupted one, and the
responses to a prompt must depend on ``seed`` and that prompt's entry of ``prompt_keys`` (its
index in the prompt set) only, not on the other prompts of the call: the trainer splits a step's
prompts over processes, and one process must sample what several do.
It is called under ``torch.no_grad()`` with the policy in eval mode. ``old_logprobs`` are only
used with ``old_logprobs: rollout``; they must then be log-softmax(logits / temperature).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from sapo_pipeline.decoding.beam import beam_sample
from sapo_pipeline.decoding.sampler import SamplerConfig, sample_groups
from sapo_pipeline.decoding.types import Rollout
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.rl.methods import method_of
from sapo_pipeline.sid.catalog import SIDTrie


@runtime_checkable
class RolloutSource(Protocol):
    def sample(self, model: Any, prompt_ids: Sequence[Sequence[int]], targets: torch.Tensor,
               group_size: int, *, seed: int, temperature: float, top_p: float,
               max_think_tokens: int, prompt_keys: Sequence[int] | None = None) -> Rollout:
        """G responses per prompt (``targets``: long [P, K]); see the module docstring."""
        ...


def describe_source(source: Any) -> Any:
    """What identifies a source's behaviour for the resume fingerprint (``describe()`` if any)."""
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else type(source).__qualname__


def check_rollout(rollout: Rollout, n_prompts: int, group_size: int, targets: torch.Tensor,
                  need_beam_rank: bool = False) -> None:
    """Validate a source's answer against what was asked; ValueError naming the problem."""
    rollout.validate()
    n = rollout.sequences.shape[0]
    if n != n_prompts * group_size:
        raise ValueError(f"rollout has {n} rows, expected {n_prompts} prompts x {group_size}")
    counts = torch.bincount(rollout.group_index.cpu(), minlength=n_prompts)
    if counts.numel() != n_prompts or (counts != group_size).any():
        raise ValueError(f"rollout groups have sizes {counts.tolist()}, expected {group_size} "
                         f"each for prompts 0..{n_prompts - 1}")
    want = targets.to(rollout.target_codes.device)[rollout.group_index]
    if not torch.equal(rollout.target_codes, want):
        raise ValueError("rollout.target_codes disagree with the prompts' targets")
    if need_beam_rank and rollout.beam_rank is None:
        raise ValueError("this algorithm needs Rollout.beam_rank (a beam rollout source)")
    if ((rollout.prompt_lengths < 1) | (rollout.response_mask[:, 0])).any():
        raise ValueError("rollout: every row needs a non-empty prompt before its response")


class _DecodingSource:
    """Shared state of the decoding-backed sources: the catalog trie, vocab and batch shape."""

    name = ""

    def __init__(self, trie: SIDTrie, vocab: SIDVocab, *, reasoning: bool = True,
                 min_think_tokens: int = 1, batch_size: int = 8) -> None:
        self.trie, self.vocab = trie, vocab
        self.reasoning, self.min_think_tokens, self.batch_size = (reasoning, min_think_tokens,
                                                                  batch_size)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "reasoning": self.reasoning,
                "min_think_tokens": self.min_think_tokens, "batch_size": self.batch_size}


class GroupSampler(_DecodingSource):
    """:class:`RolloutSource` over :func:`sapo_pipeline.decoding.sample_groups` (GRPO, SAPO).

    Log-probabilities are recorded at the sampling temperature (``logprobs_at_temperature``),
    as the trainer's loss computes them. Each prompt samples from its own counter-based stream
    seeded by ``(seed, key)`` (``prompt_keys``, default the prompts' positions), so batches and
    processes do not change what a prompt gets.
    """

    name = "sample_groups"

    def __init__(self, trie: SIDTrie, vocab: SIDVocab, *, think_temperature: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(trie, vocab, **kwargs)
        self.think_temperature = think_temperature

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "draws": "counter"}
        if self.think_temperature is not None:
            out["think_temperature"] = self.think_temperature
        return out

    def sample(self, model: Any, prompt_ids: Sequence[Sequence[int]], targets: torch.Tensor,
               group_size: int, *, seed: int, temperature: float, top_p: float,
               max_think_tokens: int, prompt_keys: Sequence[int] | None = None) -> Rollout:
        cfg = SamplerConfig(group_size=group_size, reasoning=self.reasoning,
                            temperature=temperature, top_p=top_p,
                            max_think_tokens=max_think_tokens,
                            min_think_tokens=min(self.min_think_tokens, max_think_tokens),
                            batch_size=self.batch_size, logprobs_at_temperature=True,
                            think_temperature=self.think_temperature)
        keys = range(len(prompt_ids)) if prompt_keys is None else prompt_keys
        seeds = [int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint64)[0])
                 for k in keys]
        return sample_groups(model, [list(p) for p in prompt_ids], targets.cpu(), self.trie,
                             self.vocab, cfg, prompt_seeds=seeds)


class BeamSampler(_DecodingSource):
    """:class:`RolloutSource` over :func:`sapo_pipeline.decoding.beam_sample` (ReRe): the G
    constrained beams of each prompt, ranked; temperature, top-p and seed do not apply."""

    name = "beam_sample"

    def sample(self, model: Any, prompt_ids: Sequence[Sequence[int]], targets: torch.Tensor,
               group_size: int, *, seed: int, temperature: float, top_p: float,
               max_think_tokens: int, prompt_keys: Sequence[int] | None = None) -> Rollout:
        return beam_sample(model, [list(p) for p in prompt_ids], targets.cpu(), self.trie,
                           self.vocab, num_beams=group_size, reasoning=self.reasoning,
                           max_think_tokens=max_think_tokens,
                           min_think_tokens=min(self.min_think_tokens, max_think_tokens),
                           batch_size=self.batch_size)


def make_rollout_source(cfg: Any, trie: SIDTrie, vocab: SIDVocab) -> RolloutSource:
    """The rollout source of ``cfg``'s method: ranked beams (ReRe) or sampled groups."""
    common = dict(reasoning=cfg.reasoning, min_think_tokens=cfg.min_think_tokens,
                  batch_size=cfg.rollout_batch_size)
    if method_of(cfg).rollout == "beam":
        if cfg.think_temperature is not None:
            raise ValueError(f"{cfg.algorithm}: think_temperature applies to sampled rollouts; "
                             "beam rollouts write greedy blocks already")
        return BeamSampler(trie, vocab, **common)
    return GroupSampler(trie, vocab, think_temperature=cfg.think_temperature, **common)


def decision_ids(source: RolloutSource) -> torch.Tensor:
    """The token ids that are decisions (every SID token, ``</think>``, eos) of the source's
    vocabulary (for ``think_loss: false``)."""
    vocab = getattr(source, "vocab", None)
    if vocab is None:
        raise ValueError("think_loss=false needs a rollout source with a SID vocabulary "
                         f"(.vocab); {type(source).__name__} has none")
    return torch.cat([vocab.sid_ids.long(),
                      torch.tensor([vocab.think_close_id, vocab.eos_id], dtype=torch.long)])


def decision_tokens(sequences: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """bool ``[N, T]``: the positions of ``sequences`` holding one of ``ids``."""
    return torch.isin(sequences, ids.to(sequences.device))
