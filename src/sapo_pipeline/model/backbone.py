"""Backbone factory: a small Qwen2 trained from scratch, or a local pretrained causal LM.

``build_model(cfg, tokenizer, seed, sid_tokens=...)``

* ``kind="scratch"``: a ``Qwen2ForCausalLM`` built from config, vocabulary = ``len(tokenizer)``,
  pad / eos / bos ids from the tokenizer (tokenizer from :func:`~.tokenizer.train_tokenizer`).
* ``kind="pretrained"``: ``AutoModelForCausalLM.from_pretrained(path, local_files_only=True)``;
  the SID tokens and ``<think>`` markers are added to the tokenizer (in place), the embedding
  matrix is grown to fit, and optionally LoRA adapters are attached with peft. Under LoRA the
  rows of the new tokens stay trainable: by default through peft's ``trainable_token_indices``
  (only those rows of ``embed_tokens`` -- and of ``lm_head`` when it is not tied -- train),
  or ``new_tokens="modules_to_save"`` (the whole embedding / output matrices train).

Model construction runs under ``torch.random.fork_rng`` seeded with ``seed``: deterministic, and
the caller's global RNG state is left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sapo_pipeline.model.tokenizer import (
    STRUCTURAL_TOKENS,
    add_sid_tokens,
    load_tokenizer,
    sid_token_ids,
)

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
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
    dtype: str = field(default="float32", metadata={"help": f"Parameter dtype: {sorted(_DTYPES)}."})
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
        if self.dtype not in _DTYPES:
            raise ValueError(
                f"BackboneConfig.dtype={self.dtype!r}: expected one of {sorted(_DTYPES)}"
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
        return _DTYPES[self.dtype]


@dataclass
class Checkpoint:
    """What a stage hands to the next: a model, its tokenizer and JSON-able metadata.

    ``model`` is a ``PreTrainedModel`` or a peft ``PeftModel``. Saved / loaded as one directory by
    ``sapo_pipeline.datasets.HFCheckpointDataset``.
    """

    model: Any
    tokenizer: PreTrainedTokenizerBase
    extra: dict[str, Any] = field(default_factory=dict)


def _local_dir(path: str | None) -> Path:
    p = Path(path or "")
    if not p.is_dir():
        raise FileNotFoundError(
            f"BackboneConfig.path={path!r}: not a local directory (hub downloads are disabled; "
            "save the model with save_pretrained and point here)"
        )
    return p


def load_pretrained_tokenizer(cfg: BackboneConfig) -> PreTrainedTokenizerBase:
    """The tokenizer stored beside a pretrained backbone (``cfg.path``), loaded offline."""
    return load_tokenizer(_local_dir(cfg.path))


def _set_special_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    for conf in (model.config, model.generation_config):
        if conf is None:
            continue
        conf.pad_token_id = tokenizer.pad_token_id
        conf.eos_token_id = eos
        conf.bos_token_id = bos


def _build_scratch(cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("build_model(scratch): tokenizer needs pad and eos tokens")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        rms_norm_eps=cfg.rms_norm_eps,
        initializer_range=cfg.initializer_range,
        attention_dropout=cfg.attention_dropout,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=bos,
    )
    config._attn_implementation = cfg.attn_implementation
    model = Qwen2ForCausalLM(config).to(cfg.torch_dtype)
    _set_special_ids(model, tokenizer)
    return model


def _embedding_names(model: PreTrainedModel) -> tuple[str, str | None, bool]:
    """(input embedding name, output head name or None, tied?) -- last name component."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = {id(m): n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    tied = head is not None and head.weight is emb.weight
    return names[id(emb)], (names.get(id(head)) if head is not None else None), tied


def _attach_lora(model: PreTrainedModel, lora: LoraSettings, new_ids: list[int]) -> Any:
    from peft import LoraConfig, get_peft_model  # peft only when LoRA is requested

    emb_name, head_name, tied = _embedding_names(model)
    kwargs: dict[str, Any] = {}
    if lora.new_tokens == "trainable_tokens":
        if tied or head_name is None:
            kwargs["trainable_token_indices"] = {emb_name: new_ids}
        else:
            kwargs["trainable_token_indices"] = {emb_name: new_ids, head_name: new_ids}
    elif lora.new_tokens == "modules_to_save":
        kwargs["modules_to_save"] = [emb_name] + ([head_name] if head_name else [])
        # one trainable copy shared by the tied embedding and head
        kwargs["ensure_weight_tying"] = tied
    # trainable_tokens ties the head's rows to the embedding's on its own when weights are tied
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
        **kwargs,
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA attached: %d trainable of %d parameters (%d new-token rows, tied=%s)",
        trainable,
        total,
        len(new_ids),
        tied,
    )
    return peft_model


def _build_pretrained(
    cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase, sid_tokens: Sequence[str]
) -> Any:
    path = _local_dir(cfg.path)
    before = len(tokenizer)
    add_sid_tokens(tokenizer, sid_tokens)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        local_files_only=True,
        dtype=cfg.torch_dtype,
        attn_implementation=cfg.attn_implementation,
    )
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(
            len(tokenizer),
            pad_to_multiple_of=cfg.pad_to_multiple_of,
            mean_resizing=cfg.mean_resizing,
        )
        logger.info(
            "embeddings resized %d -> %d rows", rows, model.get_input_embeddings().weight.shape[0]
        )
    _set_special_ids(model, tokenizer)
    if not cfg.lora.enabled:
        return model
    ids = sid_token_ids(tokenizer, [*STRUCTURAL_TOKENS, *sid_tokens]).values()
    new_ids = sorted(set(ids) | set(range(before, len(tokenizer))))
    return _attach_lora(model, cfg.lora, new_ids)


def build_model(
    cfg: BackboneConfig,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    sid_tokens: Sequence[str] | None = None,
) -> Any:
    """Build the backbone described by ``cfg`` for ``tokenizer``; deterministic for ``seed``.

    For ``kind="pretrained"`` ``tokenizer`` is the backbone's own tokenizer
    (:func:`load_pretrained_tokenizer`) and ``sid_tokens`` is required: they and the ``<think>``
    markers are added to it in place. Returns a ``PreTrainedModel``, or a peft ``PeftModel``
    when LoRA is enabled. For ``kind="scratch"`` the tokenizer must already hold ``sid_tokens``
    (when given, that is checked). The pad / eos / bos ids of the model config and generation
    config are taken from the tokenizer (bos falls back to eos).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.kind == "scratch":
            if sid_tokens is not None:
                sid_token_ids(tokenizer, [*STRUCTURAL_TOKENS, *sid_tokens])
            model = _build_scratch(cfg, tokenizer)
        else:
            if sid_tokens is None:
                raise ValueError("build_model(kind='pretrained'): sid_tokens is required")
            model = _build_pretrained(cfg, tokenizer, sid_tokens)
    n = count_parameters(model)
    logger.info(
        "build_model(%s/%s): %d parameters, %d trainable",
        cfg.kind,
        cfg.preset if cfg.kind == "scratch" else cfg.path,
        n,
        count_parameters(model, trainable_only=True),
    )
    return model


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameter elements (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """total / trainable / embedding (input + untied output head) / non_embedding counts.

    For a plain ``PreTrainedModel``; a peft model only gets total and trainable (its wrapped
    embeddings make the split ambiguous).
    """
    total = count_parameters(model)
    out = {"total": total, "trainable": count_parameters(model, trainable_only=True)}
    if hasattr(model, "get_base_model"):
        return out
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    n_emb = emb.numel()
    if head is not None and head.weight is not emb:
        n_emb += head.weight.numel()
    out.update(embedding=n_emb, non_embedding=total - n_emb)
    return out
