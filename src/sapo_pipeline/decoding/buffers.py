"""Per-row response records and their assembly into a :class:`~.types.Rollout`.

:class:`ResponseBuffer` holds, per row, the response tokens written so far with their full-
vocabulary log-prob, forced flag and step id (each row has its own write position, so rows that
decode out of step never leave gaps). :func:`build_rollout` lays out ``prompt + response`` rows,
right-padded, as the RL code wants them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sapo_pipeline.decoding.types import Rollout


class ResponseBuffer:
    """``[n, capacity]`` token / log-prob / forced / step records with per-row lengths."""

    def __init__(self, n: int, capacity: int, pad_id: int) -> None:
        self.pad_id = pad_id
        self.tokens = torch.full((n, capacity), pad_id, dtype=torch.long)
        self.logprobs = torch.zeros((n, capacity), dtype=torch.float32)
        self.forced = torch.zeros((n, capacity), dtype=torch.bool)
        self.steps = torch.full((n, capacity), -1, dtype=torch.long)
        self.length = torch.zeros(n, dtype=torch.long)

    @property
    def capacity(self) -> int:
        return int(self.tokens.shape[1])

    def write(self, rows: torch.Tensor, tokens: torch.Tensor, logprobs: torch.Tensor,
              forced: torch.Tensor, steps: torch.Tensor) -> None:
        """Append one token to each of ``rows`` (distinct row indices)."""
        if rows.numel() == 0:
            return
        col = self.length[rows]
        if int(col.max()) >= self.capacity:
            raise RuntimeError(f"ResponseBuffer: a response exceeds {self.capacity} tokens")
        self.tokens[rows, col] = tokens.cpu()
        self.logprobs[rows, col] = logprobs.float().cpu()
        self.forced[rows, col] = forced.cpu()
        self.steps[rows, col] = steps.cpu()
        self.length[rows] += 1

    def select(self, idx: torch.Tensor) -> None:
        """Keep rows ``idx`` (repeats allowed), e.g. the parents of new beams."""
        idx = idx.cpu()
        for name in ("tokens", "logprobs", "forced", "steps", "length"):
            setattr(self, name, getattr(self, name)[idx])

    def response(self, row: int) -> list[int]:
        return self.tokens[row, : int(self.length[row])].tolist()


def build_rollout(prompts: Sequence[Sequence[int]], group_index: torch.Tensor,
                  buf: ResponseBuffer, sid_codes: torch.Tensor, target_codes: torch.Tensor,
                  beam_rank: torch.Tensor | None = None,
                  stats: dict[str, float] | None = None) -> Rollout:
    """Rows ``prompts[group_index[r]] + response(r)``, right-padded with the pad id."""
    n = int(group_index.shape[0])
    plen_p = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    lmax = int(plen_p.max())
    pmat = torch.full((len(prompts), lmax), buf.pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        pmat[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    plen = plen_p[group_index]
    rlen = buf.length
    width = int((plen + rlen).max())
    seq = torch.full((n, width), buf.pad_id, dtype=torch.long)
    seq[:, :lmax] = pmat[group_index]
    logp = torch.zeros((n, width), dtype=torch.float32)
    steps = torch.full((n, width), -1, dtype=torch.long)
    resp = torch.zeros((n, width), dtype=torch.bool)
    sampled = torch.zeros((n, width), dtype=torch.bool)
    r, c = (torch.arange(buf.capacity)[None] < rlen[:, None]).nonzero(as_tuple=True)
    at = plen[r] + c
    seq[r, at] = buf.tokens[r, c]
    logp[r, at] = buf.logprobs[r, c]
    steps[r, at] = buf.steps[r, c]
    resp[r, at] = True
    sampled[r, at] = ~buf.forced[r, c]
    attention = torch.arange(width)[None] < (plen + rlen)[:, None]
    out = Rollout(sequences=seq, attention_mask=attention, response_mask=resp,
                  sampled_mask=sampled, step_ids=steps, old_logprobs=logp,
                  sid_codes=sid_codes.cpu().long(), group_index=group_index.long(),
                  target_codes=target_codes.cpu().long(), prompt_lengths=plen,
                  beam_rank=None if beam_rank is None else beam_rank.cpu().long(),
                  stats=dict(stats or {}))
    out.validate()
    return out


def concat_rollouts(parts: Sequence[Rollout], pad_id: int) -> Rollout:
    """Stack rollouts row-wise (padding to the widest); stats are summed."""
    if not parts:
        raise ValueError("concat_rollouts: nothing to concatenate")
    width = max(int(p.sequences.shape[1]) for p in parts)

    def cat(name: str, fill: float | int | bool) -> torch.Tensor:
        chunks = []
        for p in parts:
            x = getattr(p, name)
            if x.shape[1] < width:
                extra = torch.full((x.shape[0], width - x.shape[1]), fill, dtype=x.dtype)
                x = torch.cat([x, extra], dim=1)
            chunks.append(x)
        return torch.cat(chunks)

    stats: dict[str, float] = {}
    for p in parts:
        for k, v in p.stats.items():
            stats[k] = stats.get(k, 0.0) + float(v)
    ranks = [p.beam_rank for p in parts]
    return Rollout(
        sequences=cat("sequences", pad_id), attention_mask=cat("attention_mask", False),
        response_mask=cat("response_mask", False), sampled_mask=cat("sampled_mask", False),
        step_ids=cat("step_ids", -1), old_logprobs=cat("old_logprobs", 0.0),
        sid_codes=torch.cat([p.sid_codes for p in parts]),
        group_index=torch.cat([p.group_index for p in parts]),
        target_codes=torch.cat([p.target_codes for p in parts]),
        prompt_lengths=torch.cat([p.prompt_lengths for p in parts]),
        beam_rank=None if any(x is None for x in ranks) else torch.cat(ranks),  # type: ignore[arg-type]
        stats=stats)


def reorder_rollout(ro: Rollout, order: torch.Tensor) -> Rollout:
    """Rows of ``ro`` in ``order``."""
    return Rollout(
        sequences=ro.sequences[order], attention_mask=ro.attention_mask[order],
        response_mask=ro.response_mask[order], sampled_mask=ro.sampled_mask[order],
        step_ids=ro.step_ids[order], old_logprobs=ro.old_logprobs[order],
        sid_codes=ro.sid_codes[order], group_index=ro.group_index[order],
        target_codes=ro.target_codes[order], prompt_lengths=ro.prompt_lengths[order],
        beam_rank=None if ro.beam_rank is None else ro.beam_rank[order], stats=dict(ro.stats))
