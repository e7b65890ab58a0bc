"""The selective output head: logits only at the positions a loss needs.

The decoder body runs on every position; the output head (the vocabulary projection, the costly
part with ~8k-token vocabularies) only where the next token is labelled (SFT) or scored (RL).
Models whose head does more than a linear map (logit soft-capping, logit scaling) and models
without a separable body and head always take the full path.
"""

from __future__ import annotations

from typing import Any

import torch


def head_parts(model: Any) -> tuple[Any, Any] | None:
    """``(decoder body, output head)`` of a causal LM (plain or peft) when the head is a plain
    linear map, else None."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(lm, "config", None)
    plain_head = all(getattr(cfg, a, None) in (None, 1.0)
                     for a in ("final_logit_softcapping", "logit_scale"))
    body = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    return (body, head) if plain_head and body is not None and head is not None else None


def next_token_logits(model: Any, parts: tuple[Any, Any] | None, input_ids: torch.Tensor,
                      keep: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """``[n_kept, vocab]`` logits predicting token ``t + 1`` at every position ``t`` where
    ``keep[:, t]`` (``keep`` is ``[B, T - 1]``), through the head alone when ``parts`` (from
    :func:`head_parts`) is given, else from the model's full logits."""
    if parts is not None:
        body, head = parts
        hidden = body(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids, use_cache=False).last_hidden_state
        return head(hidden[:, :-1][keep])
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   use_cache=False).logits
    return logits[:, :-1][keep]
