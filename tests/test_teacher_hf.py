"""The local transformers teacher: plumbing with a tiny random model built by the test."""

from __future__ import annotations

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from sapo_pipeline.teacher.base import ItemInfo, ReasoningRequest
from sapo_pipeline.teacher.config import CacheConfig, HFConfig, TeacherConfig
from sapo_pipeline.teacher.factory import make_teacher
from sapo_pipeline.teacher.hierarchy import PrefixSummary

WORDS = ["Step", "1", ":", "2", "3", "the", "user", "bought", "a", "pen", "gel", "blue", "item", "next", "group", "product", "customer", "describe", "write", "sentence", "history", "level", ".", ",", ":", "(", ")", ">", "Office", "Pens", "Acme"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_teacher")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    hf_tok.save_pretrained(root)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=0, eos_token_id=1, bos_token_id=1)
    transformers.LlamaForCausalLM(cfg).save_pretrained(root)
    return root


def _teacher(path, tmp_path, **hf):
    cfg = TeacherConfig(backend="hf", hf=HFConfig(model_path=str(path), max_new_tokens=6,
                                                  batch_size=2, **hf),
                        cache=CacheConfig(path=str(tmp_path / "hf_cache.sqlite")))
    return make_teacher(cfg)


def test_hf_teacher_plumbing(tiny_model_dir, tmp_path):
    teacher = _teacher(tiny_model_dir, tmp_path)
    history = tuple(ItemInfo(item_id=i, title=f"gel pen {i}", brand="Acme",
                             categories=("Office", "Pens")) for i in range(2))
    summary = (PrefixSummary((1,), 3, categories=(("Pens", 1.0),)),
               PrefixSummary((1, 2), 2, words=(("gel", 1.0),)))
    reqs = [ReasoningRequest(key=k, history=history, target=history[k], codes=(1, 2, k),
                             hierarchy=summary) for k in range(2)]
    out = teacher.reason_steps_batch(reqs)
    # A random 1-layer model writes junk: it must be rejected and counted, never used.
    assert len(out) == 2 and not any(o.ok for o in out)
    stats = teacher.stats.to_dict()
    assert sum(stats["rejected"]["reason_steps"].values()) == 2
    assert stats["requests_made"] == 2 and stats["cache_misses"] == 2
    descs = teacher.describe_items(list(history) + [history[0]])  # duplicate asked once
    assert len(descs) == 3 and descs[0] == descs[2]
    assert teacher.stats.to_dict()["requests_made"] == 4
    teacher.close()

    again = _teacher(tiny_model_dir, tmp_path)  # same cache: zero generations
    out2 = again.reason_steps_batch(reqs)
    assert [o.error for o in out2] == [o.error for o in out]
    assert again.stats.to_dict()["requests_made"] == 0
    assert again.stats.to_dict()["cache_hits"] == 2
    again.close()


def test_hf_teacher_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_path"):
        _teacher(tmp_path / "absent", tmp_path)
