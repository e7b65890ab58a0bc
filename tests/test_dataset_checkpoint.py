"""HFCheckpointDataset: round trips (plain and peft), atomic replace, interrupted saves."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from kedro.io import DataCatalog, DatasetError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from sapo_pipeline.datasets import HFCheckpointDataset
from sapo_pipeline.model import (
    BackboneConfig,
    Checkpoint,
    LoraSettings,
    TokenizerConfig,
    build_model,
    load_pretrained_tokenizer,
    train_tokenizer,
)

SIDS = [f"<{lvl}_{i}>" for lvl in "abc" for i in range(8)]
TEXT = "the <think> cat </think><a_1><think>x</think><b_2><c_3>"


def _corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6))) for _ in range(300)
    ]
    return [" ".join(rng.choice(words) for _ in range(15)) for _ in range(n)]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_corpus(100), TokenizerConfig(vocab_size=350), SIDS)


def _scratch(tok, seed=0):
    return build_model(BackboneConfig(preset="tiny"), tok, seed=seed, sid_tokens=SIDS)


@torch.no_grad()
def _logits(model, tok):
    model.eval()
    return model(**tok([TEXT], return_tensors="pt")).logits


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_plain_round_trip_gives_identical_logits(tmp_path, tok):
    target = tmp_path / "models" / "align"
    ds = HFCheckpointDataset(filepath=str(target))
    assert not ds.exists()
    model = _scratch(tok)
    ds.save(Checkpoint(model=model, tokenizer=tok, extra={"stage": "align", "step": 3}))
    assert ds.exists()
    assert (target / "model.safetensors").exists() and (target / "tokenizer.json").exists()
    assert json.loads((target / "extra.json").read_text()) == {"stage": "align", "step": 3}
    back = ds.load()
    assert back.extra == {"stage": "align", "step": 3}
    assert back.tokenizer.encode(TEXT) == tok.encode(TEXT)
    assert torch.equal(_logits(back.model, back.tokenizer), _logits(model, tok))
    assert _leftovers(target) == []
    assert ds._describe()["filepath"] == str(target)


def test_overwrite_replaces_and_cleans_up(tmp_path, tok):
    target = tmp_path / "ckpt"
    ds = HFCheckpointDataset(filepath=str(target))
    ds.save(Checkpoint(model=_scratch(tok, 0), tokenizer=tok, extra={"v": 1}))
    second = _scratch(tok, 1)
    ds.save(Checkpoint(model=second, tokenizer=tok, extra={"v": 2}))
    back = ds.load()
    assert back.extra == {"v": 2}
    assert torch.equal(_logits(back.model, tok), _logits(second, tok))
    assert _leftovers(target) == []


class _Boom(RuntimeError):
    pass


def _exploding_save(model):
    """Make ``model.save_pretrained`` write a partial file and then fail."""

    def save_pretrained(directory, *args, **kwargs):
        (directory / "model.safetensors").write_bytes(b"partial")
        raise _Boom("disk full")

    model.save_pretrained = save_pretrained
    return model


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, tok):
    target = tmp_path / "ckpt"
    ds = HFCheckpointDataset(filepath=str(target))
    first = _scratch(tok, 0)
    ds.save(Checkpoint(model=first, tokenizer=tok, extra={"v": 1}))
    expected = _logits(first, tok)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(Checkpoint(model=_exploding_save(_scratch(tok, 1)), tokenizer=tok, extra={"v": 2}))
    assert _leftovers(target) == []
    back = ds.load()
    assert back.extra == {"v": 1}
    assert torch.equal(_logits(back.model, tok), expected)


def test_interrupted_first_save_leaves_nothing(tmp_path, tok):
    target = tmp_path / "ckpt"
    ds = HFCheckpointDataset(filepath=str(target))

    class BadTokenizer:
        def save_pretrained(self, directory):
            raise _Boom("tokenizer write failed")

    with pytest.raises(DatasetError, match="tokenizer write failed"):
        ds.save(Checkpoint(model=_scratch(tok), tokenizer=BadTokenizer(), extra={}))
    assert not target.exists() and _leftovers(target) == []
    with pytest.raises(DatasetError, match="checkpoint directory absent"):
        ds.load()


def test_bad_extra_rejected_before_touching_disk(tmp_path, tok):
    target = tmp_path / "ckpt"
    ds = HFCheckpointDataset(filepath=str(target))
    with pytest.raises(DatasetError, match="not JSON"):
        ds.save(Checkpoint(model=_scratch(tok), tokenizer=tok, extra={"x": object()}))
    with pytest.raises(DatasetError, match="not JSON"):
        ds.save(Checkpoint(model=_scratch(tok), tokenizer=tok, extra={"x": float("nan")}))
    with pytest.raises(DatasetError, match="Checkpoint"):
        ds.save({"model": 1})
    assert not target.exists() and _leftovers(target) == []


def test_stale_leftovers_of_a_crashed_save_are_removed(tmp_path, tok):
    target = tmp_path / "ckpt"
    stale = tmp_path / ".ckpt.tmp-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"junk")
    HFCheckpointDataset(filepath=str(target)).save(Checkpoint(model=_scratch(tok), tokenizer=tok))
    assert _leftovers(target) == []


def test_catalog_entry(tmp_path, tok):
    catalog = DataCatalog.from_config(
        {
            "sft_model": {
                "type": "sapo_pipeline.datasets.HFCheckpointDataset",
                "filepath": str(tmp_path / "m"),
                "metadata": {"kedro-viz": {}},
            }
        }
    )
    model = _scratch(tok)
    catalog.save("sft_model", Checkpoint(model=model, tokenizer=tok, extra={"a": [1, 2]}))
    back = catalog.load("sft_model")
    assert back.extra == {"a": [1, 2]}
    assert torch.equal(_logits(back.model, tok), _logits(model, tok))


# --------------------------------------------------------------------------- peft


def _make_base(path) -> None:
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        _corpus(80, seed=1),
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    base_tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    cfg = Qwen2Config(
        vocab_size=len(base_tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        tie_word_embeddings=True,
        eos_token_id=base_tok.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    base_tok.save_pretrained(path)


@pytest.fixture
def lora_model(tmp_path):
    base_dir = tmp_path / "base"
    _make_base(base_dir)
    cfg = BackboneConfig(
        kind="pretrained", path=str(base_dir), lora=LoraSettings(enabled=True, r=4, alpha=8)
    )
    ptok = load_pretrained_tokenizer(cfg)
    model = build_model(cfg, ptok, seed=0, sid_tokens=SIDS)
    with torch.no_grad():  # make the adapter non-trivial (lora_B starts at zero)
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model, ptok, base_dir


@pytest.mark.parametrize("save_base", [True, False])
def test_peft_round_trip(tmp_path, lora_model, save_base):
    model, ptok, base_dir = lora_model
    target = tmp_path / "ckpt"
    load_args = {"is_trainable": True}
    if not save_base:
        load_args["base_model_path"] = str(base_dir)
    ds = HFCheckpointDataset(
        filepath=str(target), save_args={"save_base_model": save_base}, load_args=load_args
    )
    ds.save(Checkpoint(model=model, tokenizer=ptok, extra={"lora": True}))
    assert (target / "adapter_config.json").exists()
    assert (target / "base_model" / "config.json").exists() == save_base
    if save_base:  # self-contained: the original pretrained directory is no longer needed
        shutil.rmtree(base_dir)
    back = ds.load()
    assert type(back.model).__name__ == "PeftModelForCausalLM"
    assert len(back.tokenizer) == len(ptok)
    assert torch.equal(_logits(back.model, back.tokenizer), _logits(model, ptok))
    trainable = [n for n, p in back.model.named_parameters() if p.requires_grad]
    assert any("lora_B" in n for n in trainable)
    assert any("trainable_tokens_delta" in n for n in trainable)
    assert _leftovers(target) == []
    # the in-memory model is untouched by saving (the base copy is unloaded from a deep copy)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_peft_without_base_needs_base_path(tmp_path, lora_model):
    model, ptok, _ = lora_model
    target = tmp_path / "ckpt"
    HFCheckpointDataset(filepath=str(target), save_args={"save_base_model": False}).save(
        Checkpoint(model=model, tokenizer=ptok)
    )
    with pytest.raises(DatasetError, match="base_model_path"):
        HFCheckpointDataset(filepath=str(target)).load()
