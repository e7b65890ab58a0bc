"""Advantages on a hand-written rollout: every token, GRPO and SAPO, forced tokens excluded."""

from __future__ import annotations

import math

import pytest
import torch
from rl_fakes import hand_rollout

from sapo_pipeline.rl.advantages import group_normalise
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, SAPOConfig
from sapo_pipeline.rl.methods import compute_advantages

EPS = 1e-4
A = 0.5 / (math.sqrt(0.5) + EPS)  # a 2-response group with rewards {1, 0}, sample std


def _cfg(cls, **kw):
    return cls(group_size=2, prompts_per_step=2, advantage_eps=EPS, **kw)


def _expected(per_row_step: list[list[float]]) -> torch.Tensor:
    """Token advantages of hand_rollout from per-(row, step) values, written position by
    position: sampled tokens get their step's value, forced tokens and padding 0."""
    r = hand_rollout()
    out = torch.zeros(r.sequences.shape)
    for i in range(4):
        for t in range(r.sequences.shape[1]):
            if r.sampled_mask[i, t]:
                out[i, t] = per_row_step[i][int(r.step_ids[i, t])]
    return out


def test_expected_helper_matches_the_written_layout():
    # row 0 (sapo): positions 2..11 = t w w /t s1 | t w /t s2 e ; step 1 tokens w s2 e sampled
    got = _expected([[0.0, 1.0], [0, 0], [0, 0], [0, 0]])[0].tolist()
    assert got == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0]


def test_grpo_exact_advantage_of_every_token():
    adv = compute_advantages(_cfg(GRPOConfig), hand_rollout())
    want = _expected([[A, A], [-A, -A], [A, A], [-A, -A]])
    assert torch.allclose(adv.token, want, atol=1e-6)
    assert adv.reward.tolist() == [1.0, 0.0, 1.0, 0.0]
    # explicit spot checks: row 0's eos (sampled) carries A; row 1's forced SID token and eos 0
    assert adv.token[0, 11].item() == pytest.approx(A)
    assert adv.token[1, 10].item() == 0.0 and adv.token[1, 11].item() == 0.0
    # forced <think> / </think> never carry advantage
    r = hand_rollout()
    forced = r.response_mask & ~r.sampled_mask
    assert (adv.token[forced] == 0).all()


def test_grpo_population_std():
    adv = compute_advantages(_cfg(GRPOConfig, std="population"), hand_rollout())
    a_pop = 0.5 / (0.5 + EPS)
    assert torch.allclose(adv.token, _expected([[a_pop] * 2, [-a_pop] * 2, [a_pop] * 2,
                                                 [-a_pop] * 2]), atol=1e-6)


def test_grpo_prefix_reward_advantage():
    # K = 2: weights (0.5, 1.0); group 0 rewards (1.0, 0.5); group 1 (1.0, 0.0)
    adv = compute_advantages(_cfg(GRPOConfig, reward="prefix"), hand_rollout())
    a0 = 0.25 / (math.sqrt(2 * 0.25 ** 2) + EPS)
    assert adv.reward.tolist() == [1.0, 0.5, 1.0, 0.0]
    assert torch.allclose(adv.token, _expected([[a0] * 2, [-a0] * 2, [A] * 2, [-A] * 2]),
                          atol=1e-6)


def test_sapo_step_advantage_of_every_token():
    """Group 0 (target (1,0)): r = (1,1), (1,0): step 1 zero variance -> 0; step 2 +-A.
    Group 1 (target (0,1)): r = (1,1), (0,0): +-A on both steps. The SID tokens and the sampled
    eos get their step's advantage; row 1's forced SID token gets none."""
    adv = compute_advantages(_cfg(SAPOConfig), hand_rollout())
    want = _expected([[0.0, A], [0.0, -A], [A, A], [-A, -A]])
    assert torch.allclose(adv.token, want, atol=1e-6)
    assert adv.token[0, 6].item() == 0.0  # row 0 SID token of step 1: zero-variance group
    assert adv.token[0, 10].item() == pytest.approx(A)  # row 0 SID token of step 2
    assert adv.token[0, 11].item() == pytest.approx(A)  # row 0 eos belongs to step 2
    assert adv.token[2, 5].item() == pytest.approx(A)  # row 2 SID token of step 1
    assert adv.zero_var.tolist() == [[True, False], [False, False]]


def test_sapo_independent_reward():
    # row 3 sid (1,1) vs target (0,1): independent r = (0, 1) -> group 1 step 2 zero variance
    adv = compute_advantages(_cfg(SAPOConfig, reward="independent"), hand_rollout())
    assert adv.step_rewards.tolist() == [[1, 1], [1, 0], [1, 1], [0, 1]]
    assert torch.allclose(adv.token, _expected([[0, A], [0, -A], [A, 0], [-A, 0]]), atol=1e-6)


def test_sapo_without_step_advantage_is_the_outcome_advantage():
    r = hand_rollout()
    ablated = compute_advantages(_cfg(SAPOConfig, step_advantage=False), r)
    grpo = compute_advantages(_cfg(GRPOConfig), r)
    assert torch.equal(ablated.token, grpo.token)
    assert _cfg(SAPOConfig, step_advantage=False).aggregation_mode == "step"
    assert _cfg(SAPOConfig, step_normalised=False).aggregation_mode == "token"


def test_zero_variance_groups_get_zero_advantage():
    # rewards that are equal but whose float mean is not exactly the value
    vals = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.2, 0.9, 0.4], dtype=torch.float32)
    group = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    norm = group_normalise(vals, group)
    assert norm.advantages[:6].tolist() == [0.0] * 6
    assert norm.zero_var[:, 0].tolist() == [True, True, False]
    assert (norm.advantages[6:] != 0).all()
    # a group of one response has no variance either
    assert group_normalise(torch.tensor([1.0]), torch.tensor([0])).advantages.item() == 0.0
    # per column for [N, K]
    two = group_normalise(torch.stack([vals, torch.arange(9.0)], dim=1), group)
    assert two.zero_var.tolist() == [[True, False], [True, False], [False, False]]


def test_group_normalise_sample_vs_population_std():
    vals = torch.tensor([1.0, 0.0, 0.0, 0.0])
    group = torch.zeros(4, dtype=torch.long)
    mean = 0.25
    s_sample = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 3)
    s_pop = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 4)
    got_s = group_normalise(vals, group, eps=0.0).advantages
    got_p = group_normalise(vals, group, eps=0.0, std="population").advantages
    assert got_s.tolist() == pytest.approx([(1 - mean) / s_sample] + [-mean / s_sample] * 3)
    assert got_p.tolist() == pytest.approx([(1 - mean) / s_pop] + [-mean / s_pop] * 3)
    assert torch.allclose(got_s * s_sample, got_p * s_pop)


def test_rere_advantage_uses_the_ranking_reward():
    r = hand_rollout()  # ranks: group 0 (0, 1): rank 0 hits; group 1 (1, 0): rank 1 hits
    adv = compute_advantages(_cfg(ReReConfig), r)
    z = 1.0 + 1.0 / math.log2(3)
    assert adv.reward.tolist() == pytest.approx([1.0, -(1 / math.log2(3)) / z, 1.0, -1.0 / z])
    r.beam_rank = None
    with pytest.raises(ValueError, match="beam rollout source"):
        compute_advantages(_cfg(ReReConfig), r)


@pytest.mark.parametrize("weight", [0.0, 0.25])
def test_negative_weight_scales_only_negative_advantages(weight):
    full = compute_advantages(_cfg(SAPOConfig), hand_rollout())
    got = compute_advantages(_cfg(SAPOConfig, negative_weight=weight), hand_rollout())
    assert (full.token < 0).any() and (full.token > 0).any()
    want = torch.where(full.token < 0, full.token * weight, full.token)
    assert torch.allclose(got.token, want)
    assert torch.allclose(got.step, torch.where(full.step < 0, full.step * weight, full.step))
    assert torch.equal(got.reward, full.reward) and torch.equal(got.zero_var, full.zero_var)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True])
def test_negative_weight_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="negative_weight"):
        _cfg(GRPOConfig, negative_weight=bad)
