"""The data contract between decoding (which produces rollouts) and RL (which consumes them).

Token-level tensors are ``[N, T]`` over the *full* sequence (prompt + response, right-padded
with the pad id), so the RL loss can recompute log-probabilities with one forward pass.
Conventions (METHOD.md §3):

* step ``k`` (0-based, ``k < K``) of a response = ``<think> z_k </think> s_k``: its thinking
  block and its SID token; the eos after the last SID token belongs to step ``K - 1``.
  Models without reasoning have steps = one SID token each (+ eos in the last step).
* ``sampled_mask`` marks tokens the policy actually sampled. Tokens the decoder forced
  (``<think>``, a ``</think>`` forced at the block cap, a SID token with a single allowed
  child, eos after step K) are response tokens but carry no loss.
* ``old_logprobs`` are full-vocabulary log-probabilities of the taken token under the sampling
  policy (no renormalisation over the allowed set), so the ratio pi_theta / pi_old compares
  like with like; 0 where not a response token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sapo_pipeline.sid.catalog import SIDTrie


@dataclass
class Rollout:
    """G responses for each of P prompts (N = P * G rows), as produced by the group sampler."""

    sequences: torch.Tensor  # long [N, T]: prompt + response, right-padded
    attention_mask: torch.Tensor  # bool [N, T]: real tokens (prompt and response)
    response_mask: torch.Tensor  # bool [N, T]: response tokens (sampled or forced)
    sampled_mask: torch.Tensor  # bool [N, T]: response tokens the policy sampled (carry loss)
    step_ids: torch.Tensor  # long [N, T]: step index 0..K-1 of each response token, -1 elsewhere
    old_logprobs: torch.Tensor  # float [N, T]: log pi_old(token) for response tokens, else 0
    sid_codes: torch.Tensor  # long [N, K]: the SID each response ended with
    group_index: torch.Tensor  # long [N]: which prompt (0..P-1) each row answers
    target_codes: torch.Tensor  # long [N, K]: the target SID of the row's prompt
    prompt_lengths: torch.Tensor  # long [N]: prompt tokens at the start of each row
    beam_rank: torch.Tensor | None = None  # long [N]: rank within its group (beam sampling)
    stats: dict[str, float] = field(default_factory=dict)  # timings, tokens, validity, ...

    @property
    def num_steps(self) -> int:
        return int(self.sid_codes.shape[1])

    def validate(self) -> None:
        """Shape and mask consistency checks; raises ValueError naming the problem."""
        n, t = self.sequences.shape
        for name in ("attention_mask", "response_mask", "sampled_mask", "step_ids", "old_logprobs"):
            if tuple(getattr(self, name).shape) != (n, t):
                raise ValueError(f"Rollout.{name} has shape {tuple(getattr(self, name).shape)}, want {(n, t)}")
        if (self.sampled_mask & ~self.response_mask).any():
            raise ValueError("Rollout: a sampled token lies outside the response")
        if ((self.step_ids >= 0) != self.response_mask).any():
            raise ValueError("Rollout: step_ids must be >= 0 exactly on response tokens")
        if self.step_ids.max() >= self.num_steps:
            raise ValueError("Rollout: step id beyond the SID length")
        if self.target_codes.shape != self.sid_codes.shape or self.group_index.shape != (n,):
            raise ValueError("Rollout: sid_codes/target_codes/group_index shapes disagree")


def check_rollout_inputs(prompts: Sequence[Sequence[int]], targets: Any, trie: SIDTrie
                         ) -> torch.Tensor:
    """Validate a rollout request (non-empty prompts, one catalog SID per prompt); the targets
    as a ``[len(prompts), K]`` long tensor."""
    if not prompts:
        raise ValueError("no prompts")
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty ({len(empty)} empty prompts)")
    tgt = torch.as_tensor(targets, dtype=torch.long)
    if tgt.shape != (len(prompts), trie.levels):
        raise ValueError(f"targets: shape {tuple(tgt.shape)}, want ({len(prompts)}, "
                         f"{trie.levels})")
    for i, t in enumerate(tgt.tolist()):
        if tuple(t) not in trie:
            raise ValueError(f"targets row {i}: {tuple(t)} is not a catalog SID")
    return tgt
