"""Tokenizer: SID / marker tokens are single ids, round trips, determinism, pretrained extension."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config

from sapo_pipeline.model.tokenizer import (
    THINK_CLOSE,
    THINK_OPEN,
    TokenizerConfig,
    add_sid_tokens,
    load_tokenizer,
    sid_token_ids,
    train_tokenizer,
)

SIDS = [f"<{lvl}_{i}>" for lvl in "abc" for i in range(256)]


def _corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
        for _ in range(400)
    ]
    texts = []
    for i in range(n):
        sid = f"<a_{rng.randrange(256)}><b_{rng.randrange(256)}><c_{rng.randrange(256)}>"
        body = " ".join(rng.choice(words) for _ in range(12))
        texts.append(f"User bought {sid}. {THINK_OPEN}{body}{THINK_CLOSE}{sid} Office Chair {i}")
    return texts


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return train_tokenizer(_corpus(), TokenizerConfig(vocab_size=600), SIDS)


def test_sid_and_marker_tokens_are_single_ids(tok):
    ids = sid_token_ids(tok, SIDS)
    assert len(ids) == 768 and len(set(ids.values())) == 768
    enc = tok.encode("<a_12><b_7><c_201>", add_special_tokens=False)
    assert enc == [ids["<a_12>"], ids["<b_7>"], ids["<c_201>"]]
    assert len(tok.encode(THINK_OPEN, add_special_tokens=False)) == 1
    assert len(tok.encode(THINK_CLOSE, add_special_tokens=False)) == 1
    # never merged with neighbours, longest match wins (<a_12> is not <a_1> + "2>")
    pieces = tok.convert_ids_to_tokens(
        tok.encode("x<a_12>y</think><c_3>", add_special_tokens=False)
    )
    assert "<a_12>" in pieces and "</think>" in pieces and "<c_3>" in pieces
    assert "<a_1>" not in pieces
    # a partial SID is ordinary text, not a SID token
    assert len(tok.encode("<a_1", add_special_tokens=False)) > 1


def test_layout_and_special_tokens(tok):
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1 and tok.bos_token_id is None
    assert len(tok) == 600 + 2 + 768
    assert tok.convert_tokens_to_ids(THINK_OPEN) == 600
    assert tok.convert_tokens_to_ids("<a_0>") == 602
    batch = tok(["<a_1>", "hello world <b_2>"], padding=True)
    assert batch["input_ids"][0][-1] == tok.pad_token_id  # right padding
    assert batch["attention_mask"][0][-1] == 0
    # plain prompts: no bos / eos added automatically
    assert tok.encode("<a_1>") == [tok.convert_tokens_to_ids("<a_1>")]


def test_decode_round_trip_keeps_sids(tok):
    text = "Office chair, <think> broad: furniture </think><a_12><think>x</think><b_7><c_201>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    with_eos = ids + [tok.eos_token_id, tok.pad_token_id]
    assert tok.decode(with_eos, skip_special_tokens=True) == text  # SIDs / markers are content
    assert tok.decode(with_eos).endswith("<|endoftext|><|pad|>")


def test_save_load_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert len(back) == len(tok)
    assert (back.pad_token_id, back.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    assert sid_token_ids(back, SIDS) == sid_token_ids(tok, SIDS)
    for text in _corpus(20, seed=3):
        assert back.encode(text) == tok.encode(text)


def test_load_tokenizer_beside_a_qwen2_config_keeps_our_pipeline(tmp_path):
    # transformers' AutoTokenizer would swap in Qwen2Tokenizer here (its own normaliser /
    # pre-tokeniser, so no lowercasing); load_tokenizer must give back exactly what was saved.
    cfg = TokenizerConfig(vocab_size=400, lowercase=True, unicode_normalization="NFKC")
    t = train_tokenizer(_corpus(200), cfg, SIDS[:10])
    t.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=len(t)).save_pretrained(tmp_path)
    back = load_tokenizer(tmp_path)
    for text in ["Office CHAIR <a_3>", "ＦＵＬＬ width", *_corpus(10, seed=5)]:
        assert back.encode(text) == t.encode(text)
    assert back.encode("HELLO") == back.encode("hello")


def test_training_is_deterministic_and_ignores_sids_in_corpus():
    cfg = TokenizerConfig(vocab_size=500)
    a = train_tokenizer(_corpus(300), cfg, SIDS)
    b = train_tokenizer(_corpus(300), cfg, SIDS)
    assert a.get_vocab() == b.get_vocab()
    learned = [t for t, i in a.get_vocab().items() if i < 500]
    # SID / marker strings are stripped before training: no merges made of their fragments
    assert not any("_" in t and len(t) > 1 for t in learned)
    assert not any("think" in t for t in learned)


def test_lowercase_option_leaves_sids_alone():
    t = train_tokenizer(_corpus(200), TokenizerConfig(vocab_size=400, lowercase=True), SIDS[:10])
    assert t.encode("Office CHAIR") == t.encode("office chair")
    assert t.decode(t.encode("<a_3>")) == "<a_3>"


def test_sid_token_ids_names_missing_tokens(tok):
    with pytest.raises(ValueError, match=r"<d_1>.*not a single token|not a single token.*<d_1>"):
        sid_token_ids(tok, ["<a_1>", "<d_1>"])


def _plain_pretrained_tokenizer() -> PreTrainedTokenizerFast:
    """A 'pretrained' tokenizer without SIDs, markers or pad token (like many base models)."""
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=350,
        special_tokens=["</s>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t.train_from_iterator(_corpus(100), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token="</s>")


def test_add_sid_tokens_to_pretrained_tokenizer():
    t = _plain_pretrained_tokenizer()
    before = len(t)
    assert len(t.encode("<a_12>", add_special_tokens=False)) > 1
    n = add_sid_tokens(t, SIDS[:20])
    assert n == 22 and len(t) == before + 22
    assert t.pad_token == "</s>"  # set from eos when missing
    assert len(t.encode("<a_12><a_7>", add_special_tokens=False)) == 2
    assert sid_token_ids(t, SIDS[:20])["<a_12>"] >= before
    assert len(t.encode("<think>", add_special_tokens=False)) == 1
    assert add_sid_tokens(t, SIDS[:20]) == 0  # idempotent
    assert add_sid_tokens(t, SIDS[:21]) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 100}, "vocab_size"),
        ({"min_frequency": 0}, "min_frequency"),
        ({"unicode_normalization": "NFX"}, "unicode_normalization"),
        ({"padding_side": "middle"}, "padding_side"),
        ({"pad_token": "<e>", "eos_token": "<e>"}, "distinct"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenizerConfig(**kwargs)


def test_bad_sid_lists_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        train_tokenizer(["abc"], TokenizerConfig(), ["<a_1>", "<a_1>"])
    with pytest.raises(ValueError, match="collide"):
        train_tokenizer(["abc"], TokenizerConfig(), ["<think>"])
    with pytest.raises(ValueError, match="whitespace"):
        train_tokenizer(["abc"], TokenizerConfig(), [" <a_1>"])
