"""SFT data: response-only labels, truncation policy, batching plan, collation, loss, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sft_setup
import torch

from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.model.sft import SFTLossModule
from sapo_pipeline.model.sft_config import AlignConfig, ReasonConfig, TrainConfig
from sapo_pipeline.model.sft_data import (
    IGNORE_INDEX,
    StepPlan,
    collate_packed,
    collate_padded,
    encode_prompts,
    tokenize_sft,
)
from sapo_pipeline.model.tokenizer import TokenizerConfig, train_tokenizer
from sapo_pipeline.sid.catalog import is_sid_token
from sapo_pipeline.training.schedule import WarmupCosine, build_optimizer, warmup_steps


@pytest.fixture(scope="module")
def setup():
    return sft_setup.tiny_setup()


def _enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_labels_cover_exactly_response_and_eos(setup):
    tok = setup.tokenizer
    prompts = ["The user bought <a_1><b_2><c_3>. Next item:", "Item titled red pen 3. Its SID:"]
    responses = ["<a_0><b_3><c_1>", "red pen 3"]
    corpus, report = tokenize_sft(prompts, responses, tok, 64)
    assert report.kept == 2 and report.truncated == 0
    for i, (p, r) in enumerate(zip(prompts, responses)):
        p_ids, r_ids = _enc(tok, p + " "), _enc(tok, r)
        ids = corpus.ids(i).tolist()
        assert ids == [*p_ids, *r_ids, tok.eos_token_id]
        assert corpus.prompt_lens[i] == len(p_ids)
        labels = corpus.labels(i).tolist()
        assert labels == [IGNORE_INDEX] * len(p_ids) + [*r_ids, tok.eos_token_id]
    # a SID response is exactly its 3 SID tokens + eos, all labelled
    assert corpus.n_labels[0] == 4
    assert tok.convert_ids_to_tokens(corpus.ids(0)[-4:-1].tolist()) == ["<a_0>", "<b_3>", "<c_1>"]
    # generation conditions on exactly the training prompt ids
    assert encode_prompts(prompts, tok, 64) == [corpus.ids(i)[: corpus.prompt_lens[i]].tolist()
                                               for i in range(2)]


def test_prompt_is_truncated_from_the_left_never_the_response(setup):
    tok = setup.tokenizer
    prompt = "The user bought " + ", ".join(f"<a_{i % 4}><b_{i % 3}><c_{i % 2}>" for i in range(30))
    response = "<a_2><b_1><c_0>"
    p_ids, r_ids = _enc(tok, prompt + " "), _enc(tok, response)
    assert len(p_ids) > 40
    corpus, report = tokenize_sft([prompt, "short:"], [response, response], tok, 24)
    room = 24 - len(r_ids) - 1
    assert corpus.ids(0).tolist() == [*p_ids[-room:], *r_ids, tok.eos_token_id]
    assert corpus.lengths[0] == 24 and corpus.prompt_lens[0] == room
    assert report.truncated == 1 and report.truncated_tokens == len(p_ids) - room
    assert report.kept == 2 and corpus.lengths[1] < 24


def test_overlong_response_is_skipped_and_listed_or_raises(setup):
    tok = setup.tokenizer
    long_resp = " ".join(["red pen desk lamp"] * 10)
    prompts, responses = ["a:", "b:", "c:"], ["<a_1><b_1><c_1>", long_resp, "<a_2><b_2><c_2>"]
    corpus, report = tokenize_sft(prompts, responses, tok, 16, source_ids=[10, 11, 12])
    assert len(corpus) == 2 and corpus.source_ids.tolist() == [10, 12]
    assert report.to_dict()["skipped"] == 1
    assert report.skipped[0]["source_id"] == 11 and "max_length=16" in report.skipped[0]["reason"]
    with pytest.raises(ValueError, match=r"row 1 \(source_id=11\), field 'response'"):
        tokenize_sft(prompts, responses, tok, 16, source_ids=[10, 11, 12], overlong="error")
    with pytest.raises(ValueError, match="field 'prompt': empty prompt"):
        tokenize_sft(["x", ""], ["<a_1>", "<a_1>"], tok, 16)
    with pytest.raises(ValueError, match="empty response"):
        tokenize_sft(["x"], [""], tok, 16)


def test_bos_is_kept_and_unlabelled_under_truncation():
    tok = train_tokenizer(["red pen desk lamp"] * 50, TokenizerConfig(vocab_size=300,
                                                                       bos_token="<|bos|>"),
                          ["<a_0>", "<a_1>"])
    corpus, report = tokenize_sft(["red pen desk lamp red pen desk lamp"], ["<a_1>"], tok, 5)
    ids = corpus.ids(0).tolist()
    assert ids[0] == tok.bos_token_id and ids[-2:] == [tok.convert_tokens_to_ids("<a_1>"),
                                                        tok.eos_token_id]
    assert len(ids) == 5 and corpus.labels(0).tolist()[:3] == [IGNORE_INDEX] * 3
    assert report.truncated == 1


def test_step_plan_is_deterministic_disjoint_and_bucketed(setup):
    lengths = setup.train.lengths
    plan = StepPlan(lengths, batch_size=4, micro_per_step=2, seed=3, mode="bucket", bucket_size=4)
    e0, again, e1 = plan.epoch(0), plan.epoch(0), plan.epoch(1)
    assert np.array_equal(e0, again) and not np.array_equal(e0, e1)
    flat = e0.ravel()
    assert len(np.unique(flat)) == len(flat) == plan.steps_per_epoch * 8
    assert plan.left_out_per_epoch == len(lengths) - len(flat)
    # the micro-batches of two ranks partition the step batch
    step = e0[0]
    parts = plan.micro_batches(step, 0, 2) + plan.micro_batches(step, 1, 2)
    assert sorted(np.concatenate(parts).tolist()) == sorted(step.tolist())
    # bucketing pads less than a plain shuffle
    rand = StepPlan(lengths, batch_size=4, micro_per_step=2, seed=3, mode="random")

    def padding(p):
        total = 0
        for s in p.epoch(0):
            for mb in p.micro_batches(s, 0, 1):
                total += lengths[mb].max() * len(mb) - lengths[mb].sum()
        return total

    assert padding(plan) < 0.6 * padding(rand)
    with pytest.raises(ValueError, match="cannot fill one optimizer step"):
        StepPlan(lengths[:3], batch_size=4, micro_per_step=1, seed=0)


def test_padded_loss_is_padding_invariant_and_head_modes_agree(setup):
    torch.manual_seed(0)
    model = setup.new_model()
    corpus = setup.train
    idx = np.argsort(corpus.lengths)[[0, len(corpus) // 2, -1]]  # very different lengths
    batch = collate_padded(corpus, idx, setup.pad_id, pad_to_multiple_of=8)
    assert batch["input_ids"].shape[1] % 8 == 0
    assert (batch["labels"] != IGNORE_INDEX).sum() == corpus.n_labels[idx].sum()
    sel, full = SFTLossModule(model, True), SFTLossModule(model, False)
    assert sel.selective and not full.selective
    with torch.no_grad():
        together = sel(**batch)
        alone = sum(sel(**collate_padded(corpus, [i], setup.pad_id)) for i in idx)
        assert torch.allclose(together, alone, rtol=1e-5)
        assert torch.allclose(together, full(**batch), rtol=1e-5)
        # the same as transformers' own mean loss times the labelled-token count
        ref = model(**batch).loss * corpus.n_labels[idx].sum()
        assert torch.allclose(together, ref, rtol=1e-5)


def test_packing_keeps_examples_apart(setup):
    model = setup.new_model()
    corpus = setup.train
    idx = np.arange(6)
    packed = collate_packed(corpus, idx, setup.pad_id, pack_length=int(corpus.lengths[idx].sum()))
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    pos = packed["position_ids"][0].tolist()
    assert pos.count(0) == 6 and (packed["labels"] != IGNORE_INDEX).sum() == corpus.n_labels[idx].sum()
    module = SFTLossModule(model, True)
    with torch.no_grad():
        padded = module(**collate_padded(corpus, idx, setup.pad_id))
        assert torch.allclose(module(**packed), padded, rtol=1e-4)
        # without the position-id restarts the examples would see each other: different loss
        leaky = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
        assert not torch.allclose(module(**leaky), padded, rtol=1e-3)
    two_rows = collate_packed(corpus, idx, setup.pad_id, pack_length=int(corpus.lengths.max()) + 2)
    assert two_rows["input_ids"].shape[0] > 1


def test_warmup_cosine_and_no_decay_groups(setup):
    f = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(20) == pytest.approx(0.1)
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(f(s) >= f(s + 1) for s in range(4, 25))
    assert warmup_steps(100, None, 0.05) == 5 and warmup_steps(100, 7, 0.05) == 7
    opt = build_optimizer(setup.new_model(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    decay, keep = opt.param_groups
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in keep["params"])


def test_configs_validate_with_named_errors():
    cfg = from_dict(AlignConfig, {"train": {"betas": [0.8, 0.9], "batch_size": 4},
                                  "backbone": {"preset": "tiny"}}, "align")
    assert cfg.train.betas == (0.8, 0.9) and cfg.eval.task == "sid_sequence"
    assert ReasonConfig().eval.layout == "reasoning"
    with pytest.raises(ConfigError, match=r"align\.train: .*batch_size=0"):
        from_dict(AlignConfig, {"train": {"batch_size": 0}}, "align")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['bach_size'\]"):
        from_dict(AlignConfig, {"train": {"bach_size": 4}}, "align")
    with pytest.raises(ValueError, match="autocast"):
        TrainConfig(autocast="fp8")
    with pytest.raises(ValueError, match="pack_length"):
        TrainConfig(batching="pack", pack_length=8, max_length=64)
    with pytest.raises(ConfigError, match="tokenizer_splits"):
        from_dict(AlignConfig, {"tokenizer_splits": ["test"]}, "align")


def test_label_only_rows_label_sid_tokens_after_the_context(setup):
    """The all-position sequence task: every response SID token is a label, the separators and
    eos are not; collation carries the mask."""
    tok = setup.tokenizer
    prompt, response = "The user bought: <a_1><b_2><c_3>,", "<a_0><b_3><c_1>, <a_2><b_1><c_0>"
    sid_ids = [i for t, i in tok.get_vocab().items() if is_sid_token(t)]
    corpus, _ = tokenize_sft([prompt, prompt], [response, response], tok, 64,
                             label_only=[True, False], label_token_ids=sid_ids)
    labelled = [t for t in corpus.labels(0).tolist() if t != IGNORE_INDEX]
    assert tok.convert_ids_to_tokens(labelled) == ["<a_0>", "<b_3>", "<c_1>", "<a_2>", "<b_1>",
                                                   "<c_0>"]
    assert corpus.n_labels.tolist() == [6, len(_enc(tok, response)) + 1]
    batch = collate_padded(corpus, [0, 1], tok.pad_token_id)
    assert batch["labels"][0].tolist()[:corpus.lengths[0]] == corpus.labels(0).tolist()
    packed = collate_packed(corpus, [0], tok.pad_token_id, 64)
    assert sorted(t for t in packed["labels"][0].tolist() if t != IGNORE_INDEX) == sorted(labelled)
    with pytest.raises(ValueError, match="need label_token_ids"):
        tokenize_sft([prompt], [response], tok, 64, label_only=[True])
    with pytest.raises(ValueError, match="no token to label"):
        tokenize_sft([prompt], ["just words"], tok, 64, label_only=[True],
                     label_token_ids=sid_ids)


def test_stage2_replay_rows_are_stage1_train_rows_of_the_named_tasks():
    import polars as pl

    from sapo_pipeline.model.sft_stages import CORPUS_COLUMNS, replay_rows

    alignment = pl.DataFrame(
        {"task": ["sid_sequence"] * 4 + ["seq_sid", "sid_sequence"],
         "prompt": ["p"] * 6, "response": ["<a_1><b_1><c_1>"] * 6,
         "split": ["train"] * 4 + ["train", "valid"], "source_id": list(range(6))},
        schema=CORPUS_COLUMNS)
    assert replay_rows(alignment, ReasonConfig(), 0).height == 0  # default: nothing replayed
    rows = replay_rows(alignment, ReasonConfig(replay_tasks=["sid_sequence"]), 0)
    assert rows["source_id"].to_list() == [0, 1, 2, 3]  # train rows only
    some = replay_rows(alignment, ReasonConfig(replay_tasks=["sid_sequence"], replay_max_rows=2), 0)
    assert some.height == 2 and set(some["source_id"]) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match=r"no train rows of \['titles_to_sid'\]"):
        replay_rows(alignment, ReasonConfig(replay_tasks=["titles_to_sid"]), 0)
    with pytest.raises(ValueError, match="needs the alignment corpus"):
        replay_rows(None, ReasonConfig(replay_tasks=["sid_sequence"]), 0)
