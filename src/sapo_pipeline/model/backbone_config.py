"""The backbone's configuration: a scratch preset (widths, layers) or a local pretrained model,
with optional LoRA (see :mod:`sapo_pipeline.model.backbone` for how a model is built from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ARCH_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "max_position_embeddings",
)
#: Architecture presets for ``kind="scratch"``; explicit fields of BackboneConfig override them.
PRESETS: dict[str, dict[str, int]] = {
    "default": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 512,
        "max_position_embeddings": 1024,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
    },
}
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA adapters for a pretrained backbone (peft)."""

    enabled: bool = field(default=False, metadata={"help": "Attach LoRA adapters (else full FT)."})
    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (lora_alpha)."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={"help": "Names of the linear modules that get adapters."},
    )
    new_tokens: str = field(
        default="trainable_tokens",
        metadata={
            "help": "How the added SID / marker embeddings train under LoRA: trainable_tokens "
            "(only their rows, peft trainable_token_indices) | modules_to_save (whole "
            "embed_tokens and lm_head) | frozen."
        },
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoraSettings.r={self.r}: must be >= 1")
        if self.alpha <= 0:
            raise ValueError(f"LoraSettings.alpha={self.alpha}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSettings.dropout={self.dropout}: must be in [0, 1)")
        if not self.target_modules or not all(
            isinstance(m, str) and m for m in self.target_modules
        ):
            raise ValueError(
                f"LoraSettings.target_modules={self.target_modules!r}: non-empty names"
            )
        if self.new_tokens not in ("trainable_tokens", "modules_to_save", "frozen"):
            raise ValueError(
                f"LoraSettings.new_tokens={self.new_tokens!r}: expected trainable_tokens | "
                "modules_to_save | frozen"
            )
        self.target_modules = list(self.target_modules)


@dataclass
class BackboneConfig:
    """Which causal LM to build. Architecture fields left at None come from ``preset``."""

    kind: str = field(default="scratch", metadata={"help": "scratch | pretrained."})
    preset: str = field(default="default", metadata={"help": f"Scratch preset: {sorted(PRESETS)}."})
    hidden_size: int | None = field(default=None, metadata={"help": "Model width (scratch)."})
    num_hidden_layers: int | None = field(default=None, metadata={"help": "Decoder layers."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Query heads."})
    num_key_value_heads: int | None = field(
        default=None, metadata={"help": "Key/value heads (grouped-query attention)."}
    )
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP width."})
    max_position_embeddings: int | None = field(
        default=None, metadata={"help": "Longest sequence (tokens)."}
    )
    tie_word_embeddings: bool = field(
        default=True, metadata={"help": "Share input embedding and output head (scratch)."}
    )
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base (scratch)."})
    rms_norm_eps: float = field(default=1e-6, metadata={"help": "RMSNorm epsilon (scratch)."})
    initializer_range: float = field(default=0.02, metadata={"help": "Init std (scratch)."})
    attention_dropout: float = field(default=0.0, metadata={"help": "Attention dropout (scratch)."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "Attention kernel: sdpa | eager."}
    )
    path: str | None = field(
        default=None,
        metadata={
            "help": "Local directory of a pretrained model + tokenizer (kind=pretrained); "
            "never a hub id."
        },
    )
    lora: LoraSettings = field(
        default_factory=LoraSettings, metadata={"help": "LoRA settings (kind=pretrained)."}
    )
    dtype: str = field(default="float32", metadata={"help": f"Parameter dtype: {sorted(DTYPES)}."})
    mean_resizing: bool = field(
        default=True,
        metadata={
            "help": "Initialise added embedding rows from the old rows' mean/covariance "
            "(pretrained); else N(0, initializer_range)."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "Pad a grown embedding matrix to a multiple of this."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.kind not in ("scratch", "pretrained"):
            raise ValueError(f"BackboneConfig.kind={self.kind!r}: expected scratch | pretrained")
        if self.preset not in PRESETS:
            raise ValueError(
                f"BackboneConfig.preset={self.preset!r}: expected one of {sorted(PRESETS)}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"BackboneConfig.dtype={self.dtype!r}: expected one of {sorted(DTYPES)}"
            )
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"BackboneConfig.attn_implementation={self.attn_implementation!r}: sdpa | eager"
            )
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"BackboneConfig.pad_to_multiple_of={self.pad_to_multiple_of}: >= 1")
        if self.kind == "pretrained":
            if not self.path:
                raise ValueError("BackboneConfig.path: required when kind='pretrained'")
            return
        if self.lora.enabled:
            raise ValueError("BackboneConfig.lora.enabled: LoRA applies to kind='pretrained' only")
        for name in _ARCH_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, PRESETS[self.preset][name])
            if getattr(self, name) < 1:
                raise ValueError(f"BackboneConfig.{name}={getattr(self, name)}: must be >= 1")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BackboneConfig: hidden_size={self.hidden_size} not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"BackboneConfig: num_attention_heads={self.num_attention_heads} not divisible by "
                f"num_key_value_heads={self.num_key_value_heads}"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]
