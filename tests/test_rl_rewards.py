"""Rewards: exact, prefix, per-step (prefix-conditioned / independent), ReRe ranking penalty."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sapo_pipeline.rl.rewards import (
    default_prefix_weights,
    exact_match,
    leading_matches,
    prefix_reward,
    ranking_penalty,
    rere_reward,
    step_rewards,
)

SID = torch.tensor([[1, 2, 3], [1, 2, 0], [1, 0, 3], [0, 2, 3], [1, 2, 3]])
TGT = torch.tensor([[1, 2, 3]] * 4 + [[1, 2, 4]])


def test_exact_and_leading_matches():
    assert exact_match(SID, TGT).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert leading_matches(SID, TGT).tolist() == [3, 2, 1, 0, 2]


def test_prefix_reward_default_is_quarter_half_one():
    assert default_prefix_weights(3) == (0.25, 0.5, 1.0)
    assert prefix_reward(SID, TGT).tolist() == [1.0, 0.5, 0.25, 0.0, 0.5]
    assert default_prefix_weights(4) == (0.125, 0.25, 0.5, 1.0)
    custom = prefix_reward(SID, TGT, (0.1, 0.2, 0.9))
    assert torch.allclose(custom, torch.tensor([0.9, 0.2, 0.1, 0.0, 0.2]))
    with pytest.raises(ValueError, match="2 weights for 3 SID levels"):
        prefix_reward(SID, TGT, (0.5, 1.0))


def test_step_rewards_prefix_conditioned_and_independent():
    pc = step_rewards(SID, TGT, "prefix_conditioned")
    assert pc.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]]
    ind = step_rewards(SID, TGT, "independent")
    # row 2 matches level 3 after a level-2 miss; row 3 matches levels 2 and 3 after a miss
    assert ind.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]]
    assert torch.equal(pc[:, -1], exact_match(SID, TGT))
    with pytest.raises(ValueError, match="mode"):
        step_rewards(SID, TGT, "bogus")


def test_proposition_prefix_reward_optimum_is_the_exact_match():
    """Enumerate every SID of a small catalog: for each target, sum_k r_k is maximised only by
    the target itself, and r_K is the exact match (METHOD.md §3, proposition)."""
    catalog = [s for s in itertools.product(range(3), range(2), range(3)) if s != (2, 1, 2)]
    cands = torch.tensor(catalog)
    for target in catalog:
        tg = torch.tensor([target] * len(catalog))
        r = step_rewards(cands, tg)
        total = r.sum(dim=1)
        best = torch.nonzero(total == total.max()).flatten().tolist()
        assert [catalog[i] for i in best] == [target]
        assert torch.equal(r[:, -1], exact_match(cands, tg))
        # prefix reward and exact match agree on the optimum too
        pr = prefix_reward(cands, tg)
        assert catalog[int(pr.argmax())] == target


def _disc(r: int) -> float:
    return 1.0 / math.log2(r + 2)


def test_ranking_penalty_on_a_hand_made_group():
    # group 0: 4 beams, rank 1 hits; group 1: 4 beams, no hit
    hit = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    rank = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    z_all = _disc(0) + _disc(1) + _disc(2) + _disc(3)  # 1 + 0.6309 + 0.5 + 0.4307 = 2.5616
    assert z_all == pytest.approx(2.561606, abs=1e-6)
    pen = ranking_penalty(hit, rank, group)
    want = [-_disc(0) / z_all, 0.0, -_disc(2) / z_all, -_disc(3) / z_all, 0, 0, 0, 0]
    assert pen.tolist() == pytest.approx(want, abs=1e-6)
    assert pen[:4].tolist() == pytest.approx([-0.390380, 0.0, -0.195190, -0.168130], abs=1e-5)
    z_wrong = _disc(0) + _disc(2) + _disc(3)
    pen_w = ranking_penalty(hit, rank, group, normalisation="wrong_beams")
    assert pen_w[:4].sum().item() == pytest.approx(-1.0, abs=1e-6)
    assert pen_w[0].item() == pytest.approx(-1 / z_wrong, abs=1e-6)
    pen_n = ranking_penalty(hit, rank, group, normalisation="none", weight=0.5)
    assert pen_n[:4].tolist() == pytest.approx([-0.5, 0.0, -0.25, -0.5 * _disc(3)], abs=1e-6)
    # without the hit condition the hit-less group is penalised too (a full group sums to -1)
    pen_all = ranking_penalty(hit, rank, group, only_with_hit=False)
    assert pen_all[4:].sum().item() == pytest.approx(-1.0, abs=1e-6)
    assert pen_all[7].item() == pytest.approx(-1 / z_all, abs=1e-6)
    # reward = exact + penalty
    sid = torch.tensor([[0, 1]] * 8)
    tgt = torch.where(hit[:, None] > 0, sid, sid + 1)
    assert rere_reward(sid, tgt, rank, group).tolist() == pytest.approx(
        [want[0], 1.0, *want[2:]], abs=1e-6)


def test_ranking_penalty_rejects_bad_ranks():
    with pytest.raises(ValueError, match="rank is >= its group's size"):
        ranking_penalty(torch.zeros(2), torch.tensor([0, 2]), torch.tensor([0, 0]))
