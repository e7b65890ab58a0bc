"""Language-model side: tokenizer, backbone factory (scratch / pretrained + LoRA), checkpoints."""

from sapo_pipeline.model.backbone import (
    PRESETS,
    BackboneConfig,
    Checkpoint,
    LoraSettings,
    build_model,
    count_parameters,
    load_pretrained_tokenizer,
    parameter_breakdown,
)
from sapo_pipeline.model.tokenizer import (
    STRUCTURAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    TokenizerConfig,
    add_sid_tokens,
    load_tokenizer,
    sid_token_ids,
    train_tokenizer,
)

__all__ = [
    "PRESETS",
    "STRUCTURAL_TOKENS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "BackboneConfig",
    "Checkpoint",
    "LoraSettings",
    "TokenizerConfig",
    "add_sid_tokens",
    "build_model",
    "count_parameters",
    "load_pretrained_tokenizer",
    "load_tokenizer",
    "parameter_breakdown",
    "sid_token_ids",
    "train_tokenizer",
]
