"""One decoding step of a Qwen2-architecture model written out, over the shared-prefix cache.

A transformers forward of one token per row spends, on our small CPU models, about as long in
the module stack (argument handling, mask construction, one call per projection) as in the
matrix products. :class:`Qwen2Step` computes the same step directly from the model's weights,
as nanoGPT would: per layer one RMSNorm, ONE product for q, k and v (their weights stacked, the attention's
1/sqrt(d) folded into q's), the rotary embedding of q and k in one go, :func:`~.shared_prefix.attend_rows`, the output projection, one RMSNorm, ONE
product for gate and up, SiLU, the down projection; then the final norm and the LM head.

It serves :class:`~.session.KVSession` steps on a shared-prefix cache (the prefill stays the
model's own forward, which fills that cache). It computes what transformers computes; only the
order of a few float operations differs (the fused RMSNorm, the scale folded into q), so the
log-probs match its forward to float rounding (tested).

:meth:`Qwen2Step.for_model` returns None -- and the session keeps calling the model -- for
anything but a plain ``Qwen2ForCausalLM`` (a peft wrapper, another architecture, a model in
training mode, a model with forward hooks or a wrapped forward such as Accelerate's autocast,
rope scaling this step does not implement, a model off the CPU).

The stacked weights are copies taken when the step is built (a session's life, during which the
weights do not change); an optimiser step between two sessions is therefore always seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sapo_pipeline.decoding.shared_prefix import SharedPrefixLayer, attend_rows, prompt_slots


@dataclass(frozen=True)
class _Layer:
    ln1: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor | None
    o_w: torch.Tensor
    o_b: torch.Tensor | None
    ln2: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2RMSNorm (fp32 statistics); one fused kernel for fp32 activations."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _cat_bias(*mods: torch.nn.Linear) -> torch.Tensor | None:
    biases = [m.bias for m in mods]
    if all(b is None for b in biases):
        return None
    return torch.cat([b.detach() if b is not None else m.weight.new_zeros(m.out_features)
                      for b, m in zip(biases, mods)])


def _scaled_q(bias: torch.Tensor | None, q_size: int, scaling: float) -> torch.Tensor | None:
    if bias is None:
        return None
    bias = bias.clone()
    bias[:q_size] *= scaling
    return bias


def _plain_qwen2(model: Any) -> bool:
    if type(model).__name__ != "Qwen2ForCausalLM" or model.training:
        return False
    config = model.config
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return False
    if getattr(config, "use_sliding_window", False) or config.hidden_act != "silu":
        return False
    if "forward" in vars(model):  # a wrapped forward (e.g. Accelerate's autocast) must run
        return False
    # the stacked weights are copied per session: cheap for our small CPU models, not for a
    # pretrained backbone on a GPU, where the module stack's overhead matters little anyway
    if next(model.parameters()).device.type != "cpu":
        return False
    for module in model.modules():
        if module._forward_hooks or module._forward_pre_hooks:
            return False
    inner = model.model
    return all(type(layer.self_attn).__name__ == "Qwen2Attention" for layer in inner.layers)


class Qwen2Step:
    """The written-out decoding step of one Qwen2 model (module docstring)."""

    def __init__(self, model: Any) -> None:
        config, inner = model.config, model.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.lm_head = model.lm_head.weight.detach()
        self.inv_freq = inner.rotary_emb.inv_freq.detach().float()
        self.attention_scaling = float(inner.rotary_emb.attention_scaling)
        layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            layers.append(_Layer(
                ln1=layer.input_layernorm.weight.detach(),
                qkv_w=torch.cat([att.q_proj.weight * att.scaling, att.k_proj.weight,
                                 att.v_proj.weight]).detach(),
                qkv_b=_scaled_q(_cat_bias(att.q_proj, att.k_proj, att.v_proj),
                                att.q_proj.out_features, att.scaling),
                o_w=att.o_proj.weight.detach(),
                o_b=None if att.o_proj.bias is None else att.o_proj.bias.detach(),
                ln2=layer.post_attention_layernorm.weight.detach(),
                gate_up=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(),
                down=mlp.down_proj.weight.detach(),
            ))
        self.layers = layers
        self.q_size = self.heads * self.head_dim
        self.kv_size = self.kv_heads * self.head_dim
        self.intermediate = config.intermediate_size

    @classmethod
    def for_model(cls, model: Any) -> Qwen2Step | None:
        """The step for a plain eval-mode ``Qwen2ForCausalLM``, else None (module docstring)."""
        return cls(model) if _plain_qwen2(model) else None

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        freqs = positions[:, None].float() * self.inv_freq.to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.attention_scaling).to(dtype)[:, None, None, :]
        sin = (emb.sin() * self.attention_scaling).to(dtype)[:, None, None, :]
        return cos, sin

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 layers: list[SharedPrefixLayer], rows: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Logits of one token per row (``ids``, ``positions`` ``[n]``); ``mask`` ``[n, Lp +
        Ls + 1]`` marks the cache positions each row attends to (this token's included);
        ``layers`` is the cache, which this step appends to.

        ``rows`` (indices): compute only these rows and return their logits ``[len(rows),
        V]``; the others get a zero key / value, which their mask must exclude (a hole, as a
        ``real=False`` token of :meth:`~.session.KVSession.step` is).
        """
        n = ids.shape[0]
        slots = None
        if rows is not None:
            ids, positions, mask = ids[rows], positions[rows], mask[rows]
            slots = prompt_slots(layers[0].row_prompt[rows], layers[0].prefix_k.shape[0])
        m = ids.shape[0]
        x = F.embedding(ids, self.embed)  # [m, h]
        cos, sin = self._rope(positions, x.dtype)
        attn_mask = mask.bool()[:, None, None, :]
        d, qs, kvs = self.head_dim, self.q_size, self.kv_size
        for spec, cache in zip(self.layers, layers):
            h = _rms_norm(x, spec.ln1, self.eps)
            qkv = F.linear(h, spec.qkv_w, spec.qkv_b)
            qk = qkv[:, :qs + kvs].view(m, self.heads + self.kv_heads, 1, d)
            qk = qk * cos + _rotate_half(qk) * sin  # RoPE on q and k at once
            q, k = qk[:, :self.heads], qk[:, self.heads:]
            v = qkv[:, qs + kvs:].view(m, self.kv_heads, 1, d)
            if rows is None:
                k_suf, v_suf = cache.update(k, v)
            else:
                k_all = k.new_zeros((n, *k.shape[1:]))
                v_all = v.new_zeros((n, *v.shape[1:]))
                k_all[rows], v_all[rows] = k, v
                k_suf, v_suf = cache.update(k_all, v_all)
                k_suf, v_suf = k_suf[rows], v_suf[rows]
            att = attend_rows(cache, q, k_suf, v_suf, attn_mask, 1.0, slots)  # q pre-scaled
            x = x + F.linear(att.reshape(m, qs), spec.o_w, spec.o_b)
            h = _rms_norm(x, spec.ln2, self.eps)
            gate, up = F.linear(h, spec.gate_up).split(self.intermediate, dim=-1)
            x = x + F.linear(F.silu(gate) * up, spec.down)
        x = _rms_norm(x, self.norm, self.eps)
        return F.linear(x, self.lm_head)
