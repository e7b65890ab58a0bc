"""Group-relative advantages, per response (GRPO) or per SID step (SAPO), and their tokens.

* :func:`group_normalise` -- A = (r - mean_G r) / (std_G r + eps) per group (and per column of a
  ``[N, K]`` reward), with ``std`` the *sample* std (Bessel, divides by |G| - 1, as ``torch.std``
  and TRL's GRPO) or the *population* std (divides by |G|). A group whose rewards are all equal
  (a zero-variance group, also any group of one response) gets advantage exactly 0, whatever
  float rounding does to its mean; the groups are reported.
* :func:`token_advantages` -- the ``[N, T]`` advantage of every token: the advantage of step
  ``step_ids[n, t]`` on the tokens the policy sampled (``sampled_mask``), 0 everywhere else --
  forced tokens (``<think>``, a forced ``</think>``, a single-child SID token, the forced eos)
  carry none. The SID token of step k and eos (step K) get their step's advantage like the
  thinking tokens do.
* :func:`weight_negatives` -- negative advantages scaled by a weight (``negative_weight``, any
  method): 1 leaves them, 0 keeps positive reinforcement only.
* :func:`grpo_advantages`, :func:`sapo_advantages`, :func:`rere_advantages` -- each method's
  rule (dispatched by :func:`sapo_pipeline.rl.methods.compute_advantages`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from sapo_pipeline.decoding.types import Rollout
from sapo_pipeline.rl import rewards as R
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, RLTrainConfig, SAPOConfig


@dataclass
class GroupNorm:
    """Result of :func:`group_normalise` (shapes for a ``[N, K]`` input; ``[N]`` drops K)."""

    advantages: torch.Tensor  # float32 [N, K]
    mean: torch.Tensor  # float64 [P, K]
    std: torch.Tensor  # float64 [P, K]
    zero_var: torch.Tensor  # bool [P, K]
    present: torch.Tensor  # bool [P]: groups with at least one response


def group_normalise(values: torch.Tensor, group_index: torch.Tensor, *, eps: float = 1e-4,
                    std: str = "sample") -> GroupNorm:
    """Normalise ``values`` ([N] or [N, K]) within the groups of ``group_index`` ([N])."""
    if std not in ("sample", "population"):
        raise ValueError(f"group_normalise: std={std!r}, expected sample | population")
    squeeze = values.ndim == 1
    v = (values[:, None] if squeeze else values).double()
    if v.ndim != 2 or group_index.shape != (v.shape[0],):
        raise ValueError(f"group_normalise: values {tuple(values.shape)} and group_index "
                         f"{tuple(group_index.shape)} disagree")
    if v.shape[0] and int(group_index.min()) < 0:
        raise ValueError("group_normalise: negative group index")
    groups = int(group_index.max().item()) + 1 if v.shape[0] else 0
    k = v.shape[1]
    count = torch.bincount(group_index, minlength=groups).double()
    mean = torch.zeros(groups, k, dtype=torch.float64, device=v.device)
    mean.index_add_(0, group_index, v)
    mean = mean / count.clamp(min=1)[:, None]
    dev = v - mean[group_index]
    sq = torch.zeros_like(mean).index_add_(0, group_index, dev * dev)
    denom = (count - 1.0) if std == "sample" else count
    sd = torch.sqrt(sq / denom.clamp(min=1)[:, None])
    idx = group_index[:, None].expand(-1, k)
    hi = torch.full_like(mean, -torch.inf).scatter_reduce(0, idx, v, "amax", include_self=True)
    lo = torch.full_like(mean, torch.inf).scatter_reduce(0, idx, v, "amin", include_self=True)
    zero_var = (hi <= lo) | (count[:, None] < 2)
    adv = dev / (sd[group_index] + eps)
    adv = torch.where(zero_var[group_index], torch.zeros_like(adv), adv).float()
    return GroupNorm(adv[:, 0] if squeeze else adv, mean, sd, zero_var, count > 0)


def token_advantages(step_adv: torch.Tensor, step_ids: torch.Tensor,
                     loss_mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]``: ``step_adv[n, step_ids[n, t]]`` where ``loss_mask``, else 0."""
    if step_adv.ndim != 2 or step_ids.shape != loss_mask.shape or step_ids.shape[0] != len(step_adv):
        raise ValueError("token_advantages: step_adv [N, K], step_ids and loss_mask [N, T]")
    if (loss_mask & (step_ids < 0)).any():
        raise ValueError("token_advantages: a loss-carrying token has no step")
    adv = step_adv.gather(1, step_ids.clamp(min=0))
    return torch.where(loss_mask, adv, torch.zeros_like(adv))


@dataclass
class Advantages:
    """What an algorithm derives from one rollout."""

    token: torch.Tensor  # float [N, T]: advantage of each token (0 off the sampled tokens)
    step: torch.Tensor  # float [N, K]: the advantage applied to step k of response i
    reward: torch.Tensor  # float [N]: the method's scalar reward (SAPO: r_iK of its reward mode)
    step_rewards: torch.Tensor  # float [N, K]: the rewards the step advantages come from
    zero_var: torch.Tensor  # bool [P, K]: group g had zero variance in the rewards of step k
    present: torch.Tensor  # bool [P]: groups present in the rollout


def weight_negatives(adv: Advantages, weight: float) -> Advantages:
    """``adv`` with every negative step and token advantage multiplied by ``weight``."""
    def scale(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, x * weight, x)
    return replace(adv, token=scale(adv.token), step=scale(adv.step))


def _outcome(reward: torch.Tensor, rollout: Rollout, cfg: RLTrainConfig,
             loss_mask: torch.Tensor) -> Advantages:
    k = rollout.num_steps
    norm = group_normalise(reward, rollout.group_index, eps=cfg.advantage_eps, std=cfg.std)
    step = norm.advantages[:, None].expand(-1, k).contiguous()
    return Advantages(token=token_advantages(step, rollout.step_ids, loss_mask), step=step,
                      reward=reward, step_rewards=reward[:, None].expand(-1, k).contiguous(),
                      zero_var=norm.zero_var.expand(-1, k).contiguous(), present=norm.present)


def grpo_advantages(cfg: GRPOConfig, rollout: Rollout, mask: torch.Tensor) -> Advantages:
    """Outcome GRPO: exact-match (or prefix) reward, one group-normalised advantage per response."""
    sid, target = rollout.sid_codes, rollout.target_codes
    if cfg.reward == "exact":
        reward = R.exact_match(sid, target)
    else:
        reward = R.prefix_reward(sid, target, cfg.prefix_weights)
    return _outcome(reward, rollout, cfg, mask)


def rere_advantages(cfg: ReReConfig, rollout: Rollout, mask: torch.Tensor) -> Advantages:
    """ReRe: exact match plus the ranking penalty of wrong beams, one advantage per response."""
    if rollout.beam_rank is None:
        raise ValueError("ReRe needs beam rollouts: Rollout.beam_rank is None (use a beam "
                         "rollout source)")
    reward = R.rere_reward(rollout.sid_codes, rollout.target_codes, rollout.beam_rank,
                           rollout.group_index, normalisation=cfg.penalty_normalisation,
                           only_with_hit=cfg.penalty_only_with_hit, weight=cfg.penalty_weight)
    return _outcome(reward, rollout, cfg, mask)


def sapo_advantages(cfg: SAPOConfig, rollout: Rollout, mask: torch.Tensor) -> Advantages:
    """SAPO: a reward and a group-normalised advantage per SID step (or, without
    ``step_advantage``, the exact-match outcome advantage on every step)."""
    sid, target = rollout.sid_codes, rollout.target_codes
    if not cfg.step_advantage:
        return _outcome(R.exact_match(sid, target), rollout, cfg, mask)
    steps = R.step_rewards(sid, target, cfg.reward)
    norm = group_normalise(steps, rollout.group_index, eps=cfg.advantage_eps, std=cfg.std)
    return Advantages(token=token_advantages(norm.advantages, rollout.step_ids, mask),
                      step=norm.advantages, reward=steps[:, -1], step_rewards=steps,
                      zero_var=norm.zero_var, present=norm.present)
