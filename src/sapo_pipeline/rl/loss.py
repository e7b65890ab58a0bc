"""The PPO-style clipped surrogate with a k3 KL penalty, and its aggregation (METHOD.md §3).

Per loss-carrying token t (``mask``: the tokens the policy sampled):

    rho_t = exp(logp_theta_t - logp_old_t)
    o_t   = min(rho_t A_t, clip(rho_t, 1 - e_low, 1 + e_high) A_t) - beta KL_t
    KL_t  = exp(logp_ref_t - logp_theta_t) - (logp_ref_t - logp_theta_t) - 1      (k3, >= 0)

Aggregations (:func:`aggregate`), the loss being ``L = -(aggregated o)``:

* ``step`` (SAPO): L = -(1/|B|) sum_i (1/K) sum_k (1/|S_ik|) sum_{t in S_ik} o_t, where S_ik are
  the loss-carrying tokens of step k of response i (thinking block and SID token; eos in step K)
  and B the responses of the batch. A step with no loss-carrying token (every token forced)
  contributes 0; with ``empty_steps="count"`` the 1/K factor still uses K (the SID levels), with
  ``"skip"`` it uses the response's number of non-empty steps. A response with no loss-carrying
  token at all contributes 0 and still counts in |B|.
* ``token`` (GRPO): L = -(sum of o_t over every loss-carrying token of the batch) / (their
  number).
* ``sequence``: L = -(1/|B|) sum_i mean_{t in response i} o_t (the DeepSeekMath GRPO form).

:func:`aggregate` returns the numerator and the denominator separately, so the trainer can divide
by the *global* denominator of a minibatch sharded across processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AGGREGATIONS = ("step", "token", "sequence")


@dataclass
class TokenObjective:
    objective: torch.Tensor  # [N, T] o_t on mask, 0 elsewhere
    ratio: torch.Tensor  # [N, T] rho_t (1 off mask)
    kl: torch.Tensor  # [N, T] k3 KL_t (0 off mask, or when no reference)
    clipped: torch.Tensor  # bool [N, T]: the clipped branch is strictly the minimum (no gradient)


def clipped_objective(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, *, clip_low: float, clip_high: float,
                      beta: float = 0.0, ref_logp: torch.Tensor | None = None) -> TokenObjective:
    """Per-token clipped surrogate minus ``beta`` k3 KL (see the module docstring)."""
    if not (logp.shape == old_logp.shape == advantages.shape == mask.shape):
        raise ValueError("clipped_objective: logp, old_logp, advantages and mask must agree")
    zero = torch.zeros_like(logp)
    log_ratio = torch.where(mask, logp - old_logp, zero)
    ratio = torch.exp(log_ratio)
    adv = advantages.to(logp.dtype)
    s1 = ratio * adv
    s2 = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    surrogate = torch.minimum(s1, s2)
    obj = surrogate
    kl = zero
    if beta > 0:
        if ref_logp is None:
            raise ValueError("clipped_objective: beta > 0 needs ref_logp")
        delta = torch.where(mask, ref_logp - logp, zero)
        kl = torch.exp(delta) - delta - 1.0
        obj = surrogate - beta * kl
    obj = torch.where(mask, obj, zero)
    return TokenObjective(obj, ratio, torch.where(mask, kl, zero), mask & (s2 < s1))


def aggregate(values: torch.Tensor, mask: torch.Tensor, step_ids: torch.Tensor, num_steps: int,
              mode: str, empty_steps: str = "count") -> tuple[torch.Tensor, float]:
    """(numerator, denominator) of the ``mode`` average of ``values`` over ``mask``."""
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregate: mode={mode!r}, expected one of {AGGREGATIONS}")
    if empty_steps not in ("count", "skip"):
        raise ValueError(f"aggregate: empty_steps={empty_steps!r}, expected count | skip")
    m = mask.to(values.dtype)
    if mode == "token":
        return (values * m).sum(), float(mask.sum().item())
    n = values.shape[0]
    if mode == "sequence":
        count = m.sum(dim=1)
        per = (values * m).sum(dim=1) / count.clamp(min=1)
        return per.sum(), float(n)
    if (mask & (step_ids < 0)).any() or (step_ids >= num_steps).any():
        raise ValueError("aggregate: step ids outside 0..K-1 on loss-carrying tokens")
    onehot = torch.nn.functional.one_hot(step_ids.clamp(min=0), num_steps).to(values.dtype)
    onehot = onehot * m[..., None]  # [N, T, K]
    count = onehot.sum(dim=1)  # [N, K] |S_ik|
    sums = torch.einsum("ntk,nt->nk", onehot, values)
    step_mean = sums / count.clamp(min=1)
    if empty_steps == "count":
        per = step_mean.sum(dim=1) / num_steps
    else:
        per = step_mean.sum(dim=1) / (count > 0).sum(dim=1).clamp(min=1).to(values.dtype)
    return per.sum(), float(n)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar: -numerator / denominator
    numerator: torch.Tensor
    denominator: float
    terms: TokenObjective


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, step_ids: torch.Tensor, num_steps: int, *, mode: str,
                clip_low: float, clip_high: float, beta: float = 0.0,
                ref_logp: torch.Tensor | None = None, empty_steps: str = "count",
                denominator: float | None = None) -> LossOutput:
    """The loss of one (mini)batch; ``denominator`` overrides the local one (global count)."""
    terms = clipped_objective(logp, old_logp, advantages, mask, clip_low=clip_low,
                              clip_high=clip_high, beta=beta, ref_logp=ref_logp)
    num, den = aggregate(terms.objective, mask, step_ids, num_steps, mode, empty_steps)
    den = den if denominator is None else denominator
    loss = -num / den if den > 0 else num * 0.0
    return LossOutput(loss, num, den, terms)
