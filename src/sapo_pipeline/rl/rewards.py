"""Verifiable rewards from the catalog (METHOD.md §3).

Every function takes the SIDs the responses ended with, ``sid [N, K]``, and the target SIDs of
their prompts, ``target [N, K]`` (long tensors), and returns float32 rewards on their device.

* :func:`exact_match` -- r_i = 1[s_i = s*].
* :func:`leading_matches` / :func:`prefix_reward` -- m_i = number of leading levels matched;
  r_i = w[m_i - 1] (0 when m_i = 0); by default w_m = 2^(m - K): 0.25 / 0.5 / 1.0 for K = 3.
* :func:`step_rewards` -- SAPO's per-step reward r_ik = prod_{j<=k} 1[s_ij = s*_j]
  (``prefix_conditioned``; r_iK is the exact match) or r_ik = 1[s_ik = s*_k] (``independent``).
* :func:`ranking_penalty` / :func:`rere_reward` -- ReRe: exact match plus, for a wrong beam of
  rank r (0-based), ``weight * -(1 / log2(r + 2)) / Z`` (Z: see :func:`ranking_penalty`), only
  in groups with at least one hit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check(sid: torch.Tensor, target: torch.Tensor) -> None:
    if sid.ndim != 2 or sid.shape != target.shape:
        raise ValueError(f"rewards: sid {tuple(sid.shape)} and target {tuple(target.shape)} "
                         "must both be [N, K]")


def exact_match(sid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N] 1.0 where the whole SID equals the target."""
    _check(sid, target)
    return (sid == target).all(dim=1).float()


def leading_matches(sid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N] long: how many leading levels match the target before the first mismatch."""
    _check(sid, target)
    return (sid == target).long().cumprod(dim=1).sum(dim=1)


def default_prefix_weights(levels: int) -> tuple[float, ...]:
    """w_m = 2^(m - K) for m = 1..K: (0.25, 0.5, 1.0) for K = 3."""
    return tuple(2.0 ** (m - levels) for m in range(1, levels + 1))


def prefix_reward(sid: torch.Tensor, target: torch.Tensor,
                  weights: Sequence[float] | None = None) -> torch.Tensor:
    """[N] w[m - 1] for m >= 1 leading levels matched, 0 for none (weights: one per level)."""
    levels = sid.shape[1]
    w = tuple(weights) if weights is not None else default_prefix_weights(levels)
    if len(w) != levels:
        raise ValueError(f"prefix_reward: {len(w)} weights for {levels} SID levels")
    table = torch.tensor((0.0, *w), dtype=torch.float32, device=sid.device)
    return table[leading_matches(sid, target)]


def step_rewards(sid: torch.Tensor, target: torch.Tensor,
                 mode: str = "prefix_conditioned") -> torch.Tensor:
    """[N, K] per-step rewards: prefix_conditioned (cumulative product) | independent."""
    _check(sid, target)
    hit = (sid == target).float()
    if mode == "prefix_conditioned":
        return hit.cumprod(dim=1)
    if mode == "independent":
        return hit
    raise ValueError(f"step_rewards: mode={mode!r}, expected prefix_conditioned | independent")


def rank_discounts(num_ranks: int) -> torch.Tensor:
    """[G] 1 / log2(r + 2) for ranks r = 0..G-1 (float64)."""
    r = torch.arange(num_ranks, dtype=torch.float64)
    return 1.0 / torch.log2(r + 2.0)


def ranking_penalty(hit: torch.Tensor, rank: torch.Tensor, group_index: torch.Tensor,
                    *, normalisation: str = "all_ranks", only_with_hit: bool = True,
                    weight: float = 1.0) -> torch.Tensor:
    """[N] penalty of each response (0 for hits); see the module docstring.

    ``p = -weight * (1 / log2(rank + 2)) / Z`` for a wrong beam, with Z:

    * ``all_ranks``: Z = sum_{r=0}^{G-1} 1 / log2(r + 2) with G the group's size, so a group of
      G wrong beams sums to -weight (the ReRe / MiniOneRec reference normalisation);
    * ``wrong_beams``: Z = sum of 1 / log2(r + 2) over the group's wrong beams only, so the
      penalties of the wrong beams always sum to -weight;
    * ``none``: Z = 1.

    With ``only_with_hit`` the penalty is 0 in groups where no response hit the target.
    """
    if normalisation not in ("all_ranks", "wrong_beams", "none"):
        raise ValueError(f"ranking_penalty: normalisation={normalisation!r}")
    if not (hit.shape == rank.shape == group_index.shape) or hit.ndim != 1:
        raise ValueError("ranking_penalty: hit, rank and group_index must be [N]")
    if (rank < 0).any():
        raise ValueError("ranking_penalty: negative beam rank")
    device = hit.device
    groups = int(group_index.max().item()) + 1 if group_index.numel() else 0
    size = torch.bincount(group_index, minlength=groups)
    if (rank >= size[group_index]).any():
        raise ValueError("ranking_penalty: a beam rank is >= its group's size")
    disc = 1.0 / torch.log2(rank.double() + 2.0)
    wrong = hit <= 0
    if normalisation == "none":
        z = torch.ones(groups, dtype=torch.float64, device=device)
    elif normalisation == "all_ranks":
        table = torch.cumsum(rank_discounts(int(size.max().item()) if groups else 0), 0).to(device)
        z = table[size - 1]
    else:
        z = torch.zeros(groups, dtype=torch.float64, device=device)
        z.index_add_(0, group_index, torch.where(wrong, disc, torch.zeros_like(disc)))
        z = torch.where(z > 0, z, torch.ones_like(z))
    pen = -weight * disc / z[group_index]
    pen = torch.where(wrong, pen, torch.zeros_like(pen))
    if only_with_hit:
        hits = torch.zeros(groups, dtype=torch.float64, device=device)
        hits.index_add_(0, group_index, (~wrong).double())
        pen = torch.where(hits[group_index] > 0, pen, torch.zeros_like(pen))
    return pen.float()


def rere_reward(sid: torch.Tensor, target: torch.Tensor, rank: torch.Tensor,
                group_index: torch.Tensor, *, normalisation: str = "all_ranks",
                only_with_hit: bool = True, weight: float = 1.0) -> torch.Tensor:
    """[N] exact match + :func:`ranking_penalty`."""
    hit = exact_match(sid, target)
    return hit + ranking_penalty(hit, rank, group_index, normalisation=normalisation,
                                 only_with_hit=only_with_hit, weight=weight)

