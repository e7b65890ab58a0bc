"""Per-token log-probabilities of a rollout under a causal LM: one forward over the sequences.

:class:`TokenLogprobs` wraps the model (so ``accelerate`` can wrap *it* in DDP and gradients
synchronise); ``forward`` returns ``logp [N, T]`` with ``logp[n, t] = log softmax(logits[n, t-1] /
temperature)[seq[n, t]]`` on the positions of ``positions`` (the response tokens) and 0 elsewhere,
plus the entropy of that distribution (float32) when asked. The output head runs only on the
positions that need logits (as the SFT loss does), unless the model's head does more than a
linear map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sapo_pipeline.training.head import head_parts, next_token_logits


class TokenLogprobs(torch.nn.Module):
    """Wraps a causal LM (plain or peft); see the module docstring."""

    def __init__(self, model: Any, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self._parts = head_parts(model)

    def forward(self, sequences: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor, with_entropy: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if positions[:, 0].any():
            raise ValueError("TokenLogprobs: position 0 has no context to be predicted from")
        keep = positions[:, 1:]
        targets = sequences[:, 1:][keep]
        logits = next_token_logits(self.model, self._parts, sequences, keep, attention_mask)
        logits = logits.float() / self.temperature
        logsm = F.log_softmax(logits, dim=-1)
        out = torch.zeros(sequences.shape, dtype=torch.float32, device=sequences.device)
        out[:, 1:][keep] = logsm.gather(1, targets[:, None])[:, 0]
        ent = None
        if with_entropy:
            ent = torch.zeros_like(out)
            with torch.no_grad():
                ent[:, 1:][keep] = -(logsm.exp() * logsm).sum(dim=-1)
        return out, ent


@torch.no_grad()
def batched_logprobs(module: TokenLogprobs, sequences: torch.Tensor,
                     attention_mask: torch.Tensor, positions: torch.Tensor,
                     row_chunks: list[torch.Tensor]) -> torch.Tensor:
    """No-grad ``[N, T]`` log-probabilities, computed chunk by chunk (rows of each chunk)."""
    out = torch.zeros(sequences.shape, dtype=torch.float32, device=sequences.device)
    for rows in row_chunks:
        width = int(attention_mask[rows].sum(dim=1).max().item())
        lp, _ = module(sequences[rows, :width], attention_mask[rows, :width],
                       positions[rows, :width])
        out[rows, :width] = lp
    return out
