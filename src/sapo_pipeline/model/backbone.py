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
from collections.abc import Callable, Sequence
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

from sapo_pipeline.model.backbone_config import (  # noqa: F401 - re-exported
    DEFAULT_LORA_TARGETS,
    DTYPES,
    PRESETS,
    BackboneConfig,
    LoraSettings,
)
from sapo_pipeline.model.tokenizer import (
    STRUCTURAL_TOKENS,
    add_sid_tokens,
    load_tokenizer,
    sid_token_ids,
)

logger = logging.getLogger(__name__)

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
    cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase, sid_tokens: Sequence[str],
    init_embeddings: Callable[[PreTrainedModel], Any] | None = None,
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
    if init_embeddings is not None:
        init_embeddings(model)
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
    init_embeddings: Callable[[PreTrainedModel], Any] | None = None,
) -> Any:
    """Build the backbone described by ``cfg`` for ``tokenizer``; deterministic for ``seed``.

    ``init_embeddings(model)``, when given, runs on the built model before LoRA wraps it (e.g.
    :func:`sapo_pipeline.model.sid_embeddings.init_sid_embeddings`).

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
            if init_embeddings is not None:
                init_embeddings(model)
        else:
            if sid_tokens is None:
                raise ValueError("build_model(kind='pretrained'): sid_tokens is required")
            model = _build_pretrained(cfg, tokenizer, sid_tokens, init_embeddings)
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
