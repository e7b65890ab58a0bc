"""Backbone factory: scratch Qwen2 presets, pretrained load + SID tokens + LoRA."""

from __future__ import annotations

import math
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from sapo_pipeline.model.backbone import (
    BackboneConfig,
    LoraSettings,
    build_model,
    count_parameters,
    load_pretrained_tokenizer,
    parameter_breakdown,
)
from sapo_pipeline.model.tokenizer import (
    STRUCTURAL_TOKENS,
    TokenizerConfig,
    sid_token_ids,
    train_tokenizer,
)

SIDS = [f"<{lvl}_{i}>" for lvl in "abc" for i in range(256)]
FEW_SIDS = [f"<{lvl}_{i}>" for lvl in "abc" for i in range(8)]


def _corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(3000)
    ]
    return [" ".join(rng.choice(words) for _ in range(25)) for _ in range(n)]


@pytest.fixture(scope="module")
def tok8k():
    """The default 8k tokenizer with the full 3 x 256 SID vocabulary."""
    return train_tokenizer(_corpus(3000), TokenizerConfig(), SIDS)


@pytest.fixture(scope="module")
def small_tok():
    return train_tokenizer(_corpus(200), TokenizerConfig(vocab_size=400), FEW_SIDS)


def _body_params(h: int, layers: int, heads: int, kv: int, inter: int) -> int:
    hd = h // heads
    attn = (h * h + h) + 2 * (h * kv * hd + kv * hd) + h * h  # q,k,v with bias; o without
    return layers * (attn + 3 * h * inter + 2 * h) + h  # + mlp + 2 norms; + final norm


def test_default_preset_parameter_count(tok8k):
    assert len(tok8k) == 8000 + 2 + 768
    model = build_model(BackboneConfig(), tok8k, seed=0, sid_tokens=SIDS)
    b = parameter_breakdown(model)
    assert b["embedding"] == len(tok8k) * 256  # tied head counted once
    assert b["non_embedding"] == _body_params(256, 4, 4, 2, 512) == 2_363_648
    assert b["total"] == 2_245_120 + 2_363_648 == count_parameters(model)
    cfg = model.config
    assert (cfg.pad_token_id, cfg.eos_token_id) == (tok8k.pad_token_id, tok8k.eos_token_id)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_tiny_preset_is_small_and_overridable(small_tok):
    model = build_model(BackboneConfig(preset="tiny"), small_tok, seed=0)
    b = parameter_breakdown(model)
    assert b["non_embedding"] == _body_params(64, 2, 2, 2, 128) < 100_000
    assert b["total"] < 200_000
    deeper = build_model(BackboneConfig(preset="tiny", num_hidden_layers=3), small_tok, seed=0)
    assert deeper.config.num_hidden_layers == 3 and deeper.config.hidden_size == 64


def test_scratch_forward_loss_and_backward(small_tok):
    model = build_model(BackboneConfig(preset="tiny"), small_tok, seed=0, sid_tokens=FEW_SIDS)
    texts = [
        "hello <think> furniture </think><a_1><think>x</think><b_2><c_3><|endoftext|>",
        "<a_0>",
    ]
    batch = small_tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (2, batch["input_ids"].shape[1], len(small_tok))
    assert torch.isfinite(out.loss)
    assert abs(out.loss.item() - math.log(len(small_tok))) < 1.0  # near-uniform at init
    out.loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_seeded_and_leaves_global_rng_alone(small_tok):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = build_model(BackboneConfig(preset="tiny"), small_tok, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model(BackboneConfig(preset="tiny"), small_tok, seed=7)
    c = build_model(BackboneConfig(preset="tiny"), small_tok, seed=8)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(
        pa["model.layers.0.mlp.up_proj.weight"], pc["model.layers.0.mlp.up_proj.weight"]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "hub"}, "kind"),
        ({"preset": "huge"}, "preset"),
        ({"hidden_size": 90}, "divisible"),
        ({"num_key_value_heads": 3}, "divisible"),
        ({"dtype": "float8"}, "dtype"),
        ({"kind": "pretrained"}, "path"),
        ({"lora": LoraSettings(enabled=True)}, "pretrained"),
        ({"lora": {"r": 0}}, "r=0"),
        ({"lora": {"new_tokens": "all"}}, "new_tokens"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackboneConfig(**kwargs)


def test_scratch_rejects_tokenizer_without_sids(small_tok):
    with pytest.raises(ValueError, match="not a single token"):
        build_model(BackboneConfig(preset="tiny"), small_tok, seed=0, sid_tokens=["<d_1>"])


# --------------------------------------------------------------------------- pretrained


def make_pretrained(path, *, tied: bool, extra_rows: int = 0) -> None:
    """A tiny 'pretrained' Qwen2 + tokenizer saved with save_pretrained.

    Like many base models, its tokenizer has an eos but no pad token, no markers and no SIDs.
    """
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        _corpus(100, seed=1),
        trainers.BpeTrainer(
            vocab_size=350,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    cfg = Qwen2Config(
        vocab_size=len(tok) + extra_rows,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        tie_word_embeddings=tied,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def _pretrained(tmp_path, *, tied=True, extra_rows=0, **lora):
    make_pretrained(tmp_path, tied=tied, extra_rows=extra_rows)
    cfg = BackboneConfig(
        kind="pretrained", path=str(tmp_path), lora=LoraSettings(**lora) if lora else LoraSettings()
    )
    tok = load_pretrained_tokenizer(cfg)
    n_before = len(tok)
    model = build_model(cfg, tok, seed=0, sid_tokens=FEW_SIDS)
    return model, tok, n_before


def _loss(model, tok):
    batch = tok(
        ["the <think> cat </think><a_1><think>x</think><b_2><c_3><|endoftext|>"],
        return_tensors="pt",
    )
    return model(**batch, labels=batch["input_ids"]).loss


def test_pretrained_full_finetune_adds_tokens_and_resizes(tmp_path):
    model, tok, n_before = _pretrained(tmp_path)
    new = len(FEW_SIDS) + len(STRUCTURAL_TOKENS)
    assert len(tok) == n_before + new
    ids = sid_token_ids(tok, [*STRUCTURAL_TOKENS, *FEW_SIDS])
    assert sorted(ids.values()) == list(range(n_before, n_before + new))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"  # pad set from eos
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert model.get_output_embeddings().weight.shape[0] == len(tok)
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    loss = _loss(model, tok)
    loss.backward()
    assert model.get_input_embeddings().weight.grad[n_before:].abs().sum() > 0


def test_pretrained_never_shrinks_padded_embeddings(tmp_path):
    model, tok, n_before = _pretrained(tmp_path, extra_rows=40)
    assert len(tok) < n_before + 40
    assert model.get_input_embeddings().weight.shape[0] == n_before + 40


@pytest.mark.parametrize("tied", [True, False])
def test_pretrained_lora_trains_adapters_and_new_token_rows(tmp_path, tied):
    model, tok, _ = _pretrained(tmp_path, tied=tied, enabled=True, r=4, alpha=8)
    assert type(model).__name__ == "PeftModelForCausalLM"
    new_ids = sorted(sid_token_ids(tok, [*STRUCTURAL_TOKENS, *FEW_SIDS]).values())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    deltas = {n: p for n, p in trainable.items() if "trainable_tokens_delta" in n}
    assert all(p.shape == (len(new_ids), 32) for p in deltas.values())
    # tied: one delta shared by embedding and head; untied: one each
    assert len(deltas) == (1 if tied else 2)
    assert all("base_layer" not in n and "lora" in n or "trainable_tokens" in n for n in trainable)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert type(emb).__name__ == type(head).__name__ == "TrainableTokensWrapper"
    assert emb.token_adapter.token_indices["default"] == new_ids
    assert model.get_input_embeddings().token_adapter.base_layer.weight.shape[0] == len(tok)
    loss = _loss(model, tok)
    loss.backward()
    for name, p in deltas.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    lora_b = [p for n, p in trainable.items() if "lora_B" in n]
    assert all(p.grad is not None for p in lora_b) and sum(p.grad.abs().sum() for p in lora_b) > 0
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_pretrained_lora_modules_to_save_keeps_tying(tmp_path):
    model, tok, _ = _pretrained(tmp_path, enabled=True, r=4, new_tokens="modules_to_save")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    saved = [n for n in trainable if "modules_to_save" in n]
    assert len(saved) == 1  # one shared copy for the tied embedding / head
    _loss(model, tok).backward()
    p = dict(model.named_parameters())[saved[0]]
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_pretrained_errors(tmp_path, small_tok):
    cfg = BackboneConfig(kind="pretrained", path=str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        build_model(cfg, small_tok, seed=0, sid_tokens=FEW_SIDS)
    with pytest.raises(ValueError, match="sid_tokens is required"):
        build_model(cfg, small_tok, seed=0)
