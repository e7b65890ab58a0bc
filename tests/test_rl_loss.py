"""The clipped surrogate + k3 KL and its aggregations, against formulas written out as loops."""

from __future__ import annotations

import math

import pytest
import torch
from rl_fakes import hand_rollout

from sapo_pipeline.rl.config import GRPOConfig, SAPOConfig
from sapo_pipeline.rl.loss import aggregate, clipped_objective, policy_loss
from sapo_pipeline.rl.methods import compute_advantages

CLIP_LO, CLIP_HI, BETA = 0.2, 0.28, 0.1


def _inputs(seed: int = 0):
    r = hand_rollout()
    g = torch.Generator().manual_seed(seed)
    shape = r.sequences.shape
    logp = -torch.rand(shape, generator=g) * 2
    old = logp + (torch.rand(shape, generator=g) - 0.5) * 0.8  # ratios well outside the clip
    ref = logp + (torch.rand(shape, generator=g) - 0.5)
    return r, logp, old, ref


def _token_term(lp: float, old: float, ref: float, a: float) -> float:
    """min(rho A, clip(rho) A) - beta (exp(ref - lp) - (ref - lp) - 1), one token."""
    rho = math.exp(lp - old)
    clipped = min(max(rho, 1 - CLIP_LO), 1 + CLIP_HI)
    kl = math.exp(ref - lp) - (ref - lp) - 1
    return min(rho * a, clipped * a) - BETA * kl


def _loop_step_loss(r, logp, old, ref, adv, k_levels: int, empty: str = "count") -> float:
    """L = -(1/|G|) sum_i (1/K) sum_k (1/|S_ik|) sum_{t in S_ik} [...], S_ik = sampled tokens
    of step k of response i."""
    n, t = r.sequences.shape
    total = 0.0
    for i in range(n):
        per_step = []
        for k in range(k_levels):
            toks = [j for j in range(t) if r.sampled_mask[i, j] and r.step_ids[i, j] == k]
            if not toks:
                per_step.append(None)
                continue
            per_step.append(sum(_token_term(logp[i, j].item(), old[i, j].item(),
                                            ref[i, j].item(), adv[i, j].item())
                                for j in toks) / len(toks))
        nonempty = [v for v in per_step if v is not None]
        div = k_levels if empty == "count" else max(len(nonempty), 1)
        total += sum(nonempty) / div
    return -total / n


def _loop_token_loss(r, logp, old, ref, adv) -> float:
    n, t = r.sequences.shape
    vals = [_token_term(logp[i, j].item(), old[i, j].item(), ref[i, j].item(), adv[i, j].item())
            for i in range(n) for j in range(t) if r.sampled_mask[i, j]]
    return -sum(vals) / len(vals)


def _run(r, logp, old, ref, adv, mode, empty="count"):
    return policy_loss(logp, old, adv, r.sampled_mask, r.step_ids, 2, mode=mode,
                       clip_low=CLIP_LO, clip_high=CLIP_HI, beta=BETA, ref_logp=ref,
                       empty_steps=empty)


def test_step_normalised_loss_equals_the_written_formula():
    r, logp, old, ref = _inputs()
    adv = compute_advantages(SAPOConfig(group_size=2, prompts_per_step=2), r).token
    out = _run(r, logp, old, ref, adv, "step")
    assert out.loss.item() == pytest.approx(_loop_step_loss(r, logp, old, ref, adv, 2), abs=1e-6)
    assert out.denominator == 4.0
    assert out.terms.clipped.any() and not out.terms.clipped.all()  # clipping exercised


def test_step_with_no_loss_token_counts_or_is_skipped():
    r, logp, old, ref = _inputs(1)
    r.sampled_mask[1, 8] = False  # row 1 step 2 had one loss token (its word): now none
    adv = torch.randn(r.sequences.shape, generator=torch.Generator().manual_seed(3))
    count = _run(r, logp, old, ref, adv, "step", "count").loss.item()
    skip = _run(r, logp, old, ref, adv, "step", "skip").loss.item()
    assert count == pytest.approx(_loop_step_loss(r, logp, old, ref, adv, 2, "count"), abs=1e-6)
    assert skip == pytest.approx(_loop_step_loss(r, logp, old, ref, adv, 2, "skip"), abs=1e-6)
    assert count != pytest.approx(skip)


def test_token_mean_loss_equals_the_written_formula():
    r, logp, old, ref = _inputs(2)
    adv = compute_advantages(GRPOConfig(group_size=2, prompts_per_step=2), r).token
    out = _run(r, logp, old, ref, adv, "token")
    assert out.loss.item() == pytest.approx(_loop_token_loss(r, logp, old, ref, adv), abs=1e-6)
    assert out.denominator == float(r.sampled_mask.sum())


def test_sequence_mean_loss():
    r, logp, old, ref = _inputs(4)
    adv = torch.randn(r.sequences.shape, generator=torch.Generator().manual_seed(5))
    terms = clipped_objective(logp, old, adv, r.sampled_mask, clip_low=CLIP_LO,
                              clip_high=CLIP_HI, beta=BETA, ref_logp=ref).objective
    want = -sum(terms[i][r.sampled_mask[i]].mean().item() for i in range(4)) / 4
    assert _run(r, logp, old, ref, adv, "sequence").loss.item() == pytest.approx(want, abs=1e-6)


def test_ablations_reduce_to_their_formulas():
    r, logp, old, ref = _inputs(6)
    base = dict(group_size=2, prompts_per_step=2)
    grpo_adv = compute_advantages(GRPOConfig(**base), r).token
    step_adv = compute_advantages(SAPOConfig(**base), r).token

    def loss_of(cfg):
        adv = compute_advantages(cfg, r).token
        return _run(r, logp, old, ref, adv, cfg.aggregation_mode).loss.item()

    # without step advantages: outcome advantage + step normalisation
    no_adv = loss_of(SAPOConfig(step_advantage=False, **base))
    assert no_adv == pytest.approx(_loop_step_loss(r, logp, old, ref, grpo_adv, 2), abs=1e-6)
    # without step normalisation: per-step advantages + token mean
    no_norm = loss_of(SAPOConfig(step_normalised=False, **base))
    assert no_norm == pytest.approx(_loop_token_loss(r, logp, old, ref, step_adv), abs=1e-6)
    # without both: plain GRPO (exact match, token mean)
    neither = loss_of(SAPOConfig(step_advantage=False, step_normalised=False, **base))
    assert neither == pytest.approx(loss_of(GRPOConfig(**base)), abs=1e-7)
    assert neither == pytest.approx(_loop_token_loss(r, logp, old, ref, grpo_adv), abs=1e-6)
    full = loss_of(SAPOConfig(**base))
    assert len({round(v, 6) for v in (full, no_adv, no_norm, neither)}) == 4


def test_clipping_kills_the_gradient_only_on_the_clipped_side():
    logp = torch.tensor([[0.5, 0.5, -0.5, -0.5]], requires_grad=True)
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    out = clipped_objective(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # rho = e^0.5 > 1.2 with A > 0: clipped; rho = e^-0.5 < 0.8 with A < 0: clipped
    assert out.clipped.tolist() == [[True, False, False, True]]
    out.objective.sum().backward()
    grad = logp.grad[0].tolist()
    assert grad[0] == 0.0 and grad[3] == 0.0
    assert grad[1] == pytest.approx(-math.exp(0.5)) and grad[2] == pytest.approx(math.exp(-0.5))


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([[-1.0, -2.0, -0.3]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    zero = torch.zeros(1, 3)
    same = clipped_objective(logp, logp, zero, mask, clip_low=0.2, clip_high=0.2, beta=1.0,
                             ref_logp=logp)
    assert same.kl.abs().max().item() == 0.0
    other = clipped_objective(logp, logp, zero, mask, clip_low=0.2, clip_high=0.2, beta=1.0,
                              ref_logp=logp + torch.tensor([[0.5, -0.5, 1.0]]))
    d = torch.tensor([0.5, -0.5, 1.0])
    assert torch.allclose(other.kl[0], torch.exp(d) - d - 1)
    assert torch.allclose(other.objective[0], -(torch.exp(d) - d - 1))
    with pytest.raises(ValueError, match="needs ref_logp"):
        clipped_objective(logp, logp, zero, mask, clip_low=0.2, clip_high=0.2, beta=1.0)


def test_aggregate_rejects_unknown_modes():
    r = hand_rollout()
    with pytest.raises(ValueError, match="mode"):
        aggregate(torch.zeros(r.sequences.shape), r.sampled_mask, r.step_ids, 2, "mean")
