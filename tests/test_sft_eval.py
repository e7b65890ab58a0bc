"""Valid SID accuracy: trie-constrained greedy decoding, think blocks, errors, real tiny model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import sft_setup
import torch

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.decoding import ConstraintError, ConstraintIndex, StepMachine
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.model.sft_config import AlignConfig
from sapo_pipeline.model.sft_data import encode_prompts
from sapo_pipeline.model.sft_stages import evaluate_stage, train_align
from sapo_pipeline.model.sid_eval import (
    constrained_decode,
    evaluate_sids,
    sid_accuracy,
    target_sid,
)
from sapo_pipeline.sid.catalog import SIDTrie

ITEMS = [(0, 0, 1), (0, 2, 3), (1, 1, 0), (3, 0, 2)]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    return sft_setup.tiny_setup()


@pytest.fixture(scope="module")
def trie():
    return SIDTrie(range(len(ITEMS)), np.array(ITEMS))


class _Seen:
    """Fake KV cache: only the number of positions fed so far (the same for every row)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def batch_select_indices(self, idx: torch.Tensor) -> None:
        """Rows are interchangeable for a bigram model: nothing to reorder."""


class BigramLM(torch.nn.Module):
    """Next-token logits depend only on the last token: ``table[last]`` (we control them)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                use_cache=False, logits_to_keep=0):
        self.calls += 1
        seen = cache.n if cache is not None else 0
        assert attention_mask.shape[1] == seen + input_ids.shape[1]
        logits = self.table[input_ids]
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits, cache=_Seen(seen + input_ids.shape[1]))


def _bigram(tok, prefs: dict[str, list[str]]) -> BigramLM:
    """Each row: small seeded noise, then descending scores for the listed tokens."""
    v = len(tok)
    table = torch.rand((v, v), generator=torch.Generator().manual_seed(0)) * 0.1
    ids = tok.convert_tokens_to_ids
    for prev, wanted in prefs.items():
        for rank, nxt in enumerate(wanted):
            table[ids(prev), ids(nxt)] = 10.0 - rank
    return BigramLM(table)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_sid_layout_follows_the_trie(setup, trie):
    tok = setup.tokenizer
    red, blue = tok.convert_ids_to_tokens(_ids(tok, " red")[-1]), tok.convert_ids_to_tokens(
        _ids(tok, " blue")[-1])
    model = _bigram(tok, {
        red: ["<a_2>", "<a_1>", "<a_0>"],          # a_2 is no catalog root -> a_1
        "<a_1>": ["<b_0>", "<b_1>"],               # (1, 0) absent -> b_1
        "<b_1>": ["<c_3>", "<c_0>"],               # (1, 1, 3) absent -> c_0
        blue: ["<a_0>"],
        "<a_0>": ["<b_2>", "<b_0>"],
        "<b_2>": ["<c_3>"],
    })
    prompts = [_ids(tok, "the user bought pen desk red"), _ids(tok, "blue")]
    out = constrained_decode(model, tok, trie, prompts, layout="sid", batch_size=2)
    assert [o["sid"] for o in out] == [(1, 1, 0), (0, 2, 3)]
    assert model.calls == 3  # prompt pass + 2 cached steps (the last SID token needs none)
    one_by_one = [constrained_decode(model, tok, trie, [p], layout="sid")[0]["sid"]
                  for p in prompts]
    assert one_by_one == [(1, 1, 0), (0, 2, 3)]


def test_reasoning_layout_masks_sids_in_think_blocks_and_caps_them(setup, trie):
    tok = setup.tokenizer
    pen = tok.convert_ids_to_tokens(_ids(tok, " pen")[-1])
    prompt = [_ids(tok, "the user bought")]
    closing = _bigram(tok, {
        # inside a block: SID-like tokens (catalog or not: <a_2> is no catalog root) and eos
        # are masked, and </think> may not end an empty block
        "<think>": ["<a_2>", "</think>", "<a_3>", tok.eos_token, pen],
        pen: ["</think>"],
        "</think>": ["<a_3>", "<b_0>", "<c_2>"],
    })
    out = constrained_decode(closing, tok, trie, prompt, layout="reasoning", think_max_tokens=5)
    assert out[0]["sid"] == (3, 0, 2) and out[0]["think_tokens"] == [1, 1, 1]
    assert out[0]["cap_hits"] == 0
    looping = _bigram(tok, {"<think>": [pen], pen: [pen, "</think>"],
                            "</think>": ["<a_3>", "<b_0>", "<c_2>"]})
    out = constrained_decode(looping, tok, trie, prompt, layout="reasoning", think_max_tokens=4)
    assert out[0]["sid"] == (3, 0, 2) and out[0]["think_tokens"] == [4, 4, 4]
    assert out[0]["cap_hits"] == 3


def test_unknown_prefixes_and_targets_are_errors(setup, trie):
    tok = setup.tokenizer
    vocab = SIDVocab.from_tokenizer(tok, table=trie)
    machine = StepMachine(ConstraintIndex.get(trie, vocab), vocab, reasoning=False)
    allowed = machine.dense_mask(machine.replay([vocab.codes_to_ids([0])]), len(tok))[0]
    assert allowed.nonzero().flatten().tolist() == sorted(vocab.codes_to_ids([0, 0])[1:]
                                                          + vocab.codes_to_ids([0, 2])[1:])
    with pytest.raises(ConstraintError, match="not a prefix of any catalog item"):
        machine.replay([vocab.codes_to_ids([2])])
    with pytest.raises(ConstraintError, match="not a prefix"):
        machine.replay([vocab.codes_to_ids([0, 1])])
    model = _bigram(tok, {})
    with pytest.raises(ValueError, match=r"source_id=77\): target SID \(2, 2, 2\) is not a catalog"):
        evaluate_sids(model, tok, trie, [[5], [6]], [(0, 0, 1), (2, 2, 2)], layout="sid",
                      batch_size=2, think_max_tokens=4, source_ids=[76, 77])
    big = SIDTrie([0, 1], np.array([[0, 0, 1], [9, 0, 1]]))  # <a_9> is no token of tok
    with pytest.raises(ValueError, match="not a single token id of the tokenizer"):
        constrained_decode(model, tok, big, [[5]])
    with pytest.raises(ValueError, match="no SID token"):
        target_sid("just a title")
    assert target_sid("<think> x </think><a_1><think> y </think><b_2><think> z </think><c_0>") \
        == (1, 2, 0)


def test_accuracy_counts_exact_and_prefix_matches():
    rep = sid_accuracy([(1, 1, 0), (0, 2, 3), (0, 0, 1)], [(1, 1, 0), (0, 2, 1), (1, 0, 1)], 3)
    assert rep["n"] == 3 and rep["exact_match"] == pytest.approx(1 / 3)
    assert rep["prefix_accuracy"] == pytest.approx({"1": 2 / 3, "2": 2 / 3, "3": 1 / 3})


def _naive(model, tok, trie, prompt, reasoning, cap):
    """Reference decoder: one sequence, full forward every step, no cache, no padding. Inside a
    block: no SID-like / special token, eos, pad or ``<think>``, and no ``</think>`` first."""
    vocab = SIDVocab.from_tokenizer(tok, table=trie)
    ids = tok.convert_tokens_to_ids
    banned = vocab.banned_in_think()
    seq, prefix = list(prompt), ()
    for level in range(trie.levels):
        if reasoning:
            seq.append(ids("<think>"))
            for n in range(cap + 1):
                logits = model(torch.tensor([seq])).logits[0, -1].clone()
                logits[banned] = -torch.inf
                if n == 0:
                    logits[ids("</think>")] = -torch.inf
                nxt = ids("</think>") if n == cap else int(logits.argmax())
                seq.append(nxt)
                if nxt == ids("</think>"):
                    break
        codes = trie.children(prefix).tolist()
        token_ids = [vocab.token_id(level, c) for c in codes]
        logits = model(torch.tensor([seq])).logits[0, -1]
        best = int(logits[token_ids].argmax())
        seq.append(token_ids[best])
        prefix = (*prefix, codes[best])
    return prefix


def test_cached_batched_decoding_equals_naive_decoding(setup):
    trie = SIDTrie.from_table(setup.table)
    model = setup.new_model(seed=3).eval()
    rows = setup.reasoning.filter(setup.reasoning["split"] == "valid").head(5)
    prompts = encode_prompts(rows["prompt"].to_list(), setup.tokenizer, 60)
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    for layout in ("sid", "reasoning"):
        fast = constrained_decode(model, setup.tokenizer, trie, prompts, layout=layout,
                                  batch_size=3, think_max_tokens=3)
        with torch.no_grad():
            slow = [_naive(model, setup.tokenizer, trie, p, layout == "reasoning", 3)
                    for p in prompts]
        assert [f["sid"] for f in fast] == slow


def test_a_briefly_trained_model_learns_title_to_sid(setup, tmp_path):
    cfg = from_dict(AlignConfig, {
        "tasks": ["title_to_sid"], "backbone": {"preset": "tiny"},
        "train": {"epochs": 100, "max_steps": 200, "batch_size": 16, "lr": 1e-2,
                  "max_length": 64, "eval_every": 0, "checkpoint_every": 0, "warmup_steps": 5,
                  "work_dir": str(tmp_path / "w"), "progress_bar": False},
        "eval": {"task": "title_to_sid", "batch_size": 8}}, "align")
    ckpt, _ = train_align(setup.alignment, setup.tokenizer, setup.table, cfg)
    report = evaluate_stage(ckpt, setup.alignment, setup.table, cfg.eval, cfg.train,
                            stage="align", corpus_name="alignment_corpus")
    valid_rows = setup.alignment.filter((setup.alignment["split"] == "valid")
                                        & (setup.alignment["task"] == "title_to_sid")).height
    assert report["n"] == report["rows_available"] == valid_rows
    assert report["valid_item_rate"] == 1.0
    assert report["exact_match"] >= 0.9  # measured 1.0
    assert report["prefix_accuracy"]["1"] >= report["prefix_accuracy"]["3"]
    with pytest.raises(ValueError, match="no valid rows of task 'nope'"):
        evaluate_stage(ckpt, setup.alignment, setup.table,
                       from_dict(AlignConfig, {"eval": {"task": "nope"}}).eval, cfg.train,
                       stage="align", corpus_name="alignment_corpus")
