"""Constrained decoding for SID generation: the step-aligned state machine, the RL group
sampler (shared prefill), step-wise beam search for evaluation, plain SID beam search.

Entry points::

    vocab = SIDVocab.from_tokenizer(tokenizer, table=sid_table)      # once per tokenizer
    hits = beam_search(model, prompt_ids, trie, vocab, num_beams=10, reasoning=True)
    greedy = greedy_decode(model, prompt_ids, trie, vocab, reasoning=True)
    rollout = sample_groups(model, prompt_ids, targets, trie, vocab, SamplerConfig(group_size=16))
    rere = beam_sample(model, prompt_ids, targets, trie, vocab, num_beams=16)
"""

from sapo_pipeline.decoding.beam import (
    BeamConfig,
    BeamHit,
    GreedyResult,
    beam_sample,
    beam_search,
    greedy_decode,
)
from sapo_pipeline.decoding.constraint import ConstraintIndex
from sapo_pipeline.decoding.sampler import SamplerConfig, pick_tokens, sample_groups
from sapo_pipeline.decoding.session import KVSession, left_pad
from sapo_pipeline.decoding.state_machine import (
    Constraint,
    ConstraintError,
    MachineState,
    StepMachine,
)
from sapo_pipeline.decoding.types import Rollout
from sapo_pipeline.decoding.vocab import SIDVocab

__all__ = [
    "BeamConfig",
    "BeamHit",
    "Constraint",
    "ConstraintError",
    "ConstraintIndex",
    "GreedyResult",
    "KVSession",
    "MachineState",
    "Rollout",
    "SIDVocab",
    "SamplerConfig",
    "StepMachine",
    "beam_sample",
    "beam_search",
    "greedy_decode",
    "left_pad",
    "pick_tokens",
    "sample_groups",
]
