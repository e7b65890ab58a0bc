"""Self-tests of the rl fakes helpers (tests/rl_fakes.py)."""

from __future__ import annotations

import torch
from rl_fakes import ToySource, hand_rollout, tiny_model, toy_prompts, toy_trie


def test_hand_rollout_is_valid():
    r = hand_rollout()
    r.validate()
    assert r.sampled_mask.sum(dim=1).tolist() == [6, 4, 5, 5]


def test_toy_source_rollout_is_consistent_and_deterministic():
    model, trie = tiny_model(), toy_trie()
    prompts = toy_prompts(4)
    tg = torch.as_tensor(prompts.targets[:2])
    a = ToySource(trie).sample(model, prompts.prompt_ids[:2], tg, 4, seed=7, temperature=1.0,
                               top_p=1.0, max_think_tokens=8)
    b = ToySource(trie).sample(model, prompts.prompt_ids[:2], tg, 4, seed=7, temperature=1.0,
                               top_p=1.0, max_think_tokens=8)
    a.validate()
    assert torch.equal(a.sequences, b.sequences)
    assert all(tuple(s) in trie for s in a.sid_codes.tolist())
    # forced tokens: 3 <think>, 3 </think>, eos -> never sampled
    forced = a.response_mask & ~a.sampled_mask
    assert (forced.sum(dim=1) >= 7).all()
    # the logged old log-probabilities are the model's full-vocabulary ones
    logits = model(input_ids=a.sequences).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(2, a.sequences[:, 1:, None])[..., 0]
    assert torch.allclose(lp[a.response_mask[:, 1:]], a.old_logprobs[:, 1:][a.response_mask[:, 1:]],
                          atol=1e-5)
