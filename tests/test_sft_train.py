"""The SFT loop: learning, resume equality, early stopping, work-dir hygiene, Stage 1 -> Stage 2."""

from __future__ import annotations

import pytest
import sft_setup
import torch

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.datasets.checkpoint import HFCheckpointDataset
from sapo_pipeline.model import sft as sft_module
from sapo_pipeline.model.sft import SFTLossModule, train_sft
from sapo_pipeline.model.sft_config import AlignConfig, ReasonConfig
from sapo_pipeline.model.sft_data import collate_padded, tokenize_sft
from sapo_pipeline.model.sft_stages import build_tokenizer, train_align, train_reason
from sapo_pipeline.model.sft_state import csv_to_log, log_to_csv
from sapo_pipeline.training.workdir import trainable_state


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    return sft_setup.tiny_setup()


class Stop(Exception):
    pass


def _stop_at(step):
    def cb(info):
        if info.event == "step" and info.step == step:
            raise Stop(step)
    return cb


def _same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a) <= atol


def test_loss_decreases_on_a_small_corpus(setup, tmp_path):
    cfg = sft_setup.train_config(tmp_path / "w", max_steps=40, eval_every=10, log_every=5,
                                 checkpoint_every=0)
    result = train_sft(setup.new_model(), setup.train, setup.valid, cfg, pad_id=setup.pad_id)
    train = [r["train_loss"] for r in result.log]
    valid = [r["valid_loss"] for r in result.log if r["valid_loss"] is not None]
    assert len(valid) == 4 and result.summary["steps"] == 40
    assert train[-1] < 0.6 * train[0] and valid[-1] < 0.7 * valid[0]
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["lr"] > 0 for r in result.log)
    assert result.summary["best_step"] == 40  # still improving: last = best
    # the CSV round-trips (what DVC plots); the live log in work_dir (appended) is the same
    assert (tmp_path / "w" / "log.csv").read_text(encoding="utf-8") == log_to_csv(result.log)
    back = csv_to_log(log_to_csv(result.log))
    assert [r["step"] for r in back] == [r["step"] for r in result.log]
    assert back[-1]["valid_loss"] == pytest.approx(valid[-1], rel=1e-6)


def test_interrupted_run_resumes_to_identical_weights(setup, tmp_path):
    # dropout on, so the RNG state must be restored too; grad accumulation on
    arch = {"attention_dropout": 0.1}
    over = {"max_steps": 14, "grad_accum": 2, "batch_size": 4, "eval_every": 3,
            "checkpoint_every": 4, "log_every": 3}
    full = train_sft(setup.new_model(**arch), setup.train, setup.valid,
                     sft_setup.train_config(tmp_path / "a", **over), pad_id=setup.pad_id)
    work = tmp_path / "b"
    with pytest.raises(Stop):
        train_sft(setup.new_model(**arch), setup.train, setup.valid,
                  sft_setup.train_config(work, **over), pad_id=setup.pad_id,
                  callbacks=[_stop_at(9)])  # last checkpoint: step 8
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-000008"]
    began = []
    resumed = train_sft(setup.new_model(**arch), setup.train, setup.valid,
                        sft_setup.train_config(work, **over), pad_id=setup.pad_id,
                        callbacks=[lambda i: began.append(i.step) if i.event == "begin" else None])
    assert began == [8]
    assert (work / "log.csv").read_text(encoding="utf-8") == log_to_csv(resumed.log)
    assert _same(trainable_state(full.model), trainable_state(resumed.model), atol=1e-6)
    key = ("step", "train_loss", "valid_loss", "lr", "grad_norm")
    def flat(log):
        return [r[k] if r[k] is not None else -1.0 for r in log for k in key]

    assert flat(full.log) == pytest.approx(flat(resumed.log), rel=1e-6)
    assert full.summary["best_step"] == resumed.summary["best_step"]
    # a completed run is not trained again
    steps = []
    again = train_sft(setup.new_model(**arch), setup.train, setup.valid,
                      sft_setup.train_config(work, **over), pad_id=setup.pad_id,
                      callbacks=[lambda i: steps.append(i.step) if i.event == "step" else None])
    assert steps == [] and _same(trainable_state(again.model), trainable_state(full.model))


def test_changed_config_starts_fresh_and_require_fails(setup, tmp_path):
    work = tmp_path / "w"
    cfg = sft_setup.train_config(work, max_steps=4)
    train_sft(setup.new_model(), setup.train, None, cfg, pad_id=setup.pad_id)
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-000004"]
    began = []
    train_sft(setup.new_model(), setup.train, None, sft_setup.train_config(work, max_steps=4,
                                                                           lr=1e-3),
              pad_id=setup.pad_id, callbacks=[lambda i: began.append(i.step)
                                              if i.event == "begin" else None])
    assert began == [0]  # the lr=3e-3 checkpoint did not match
    with pytest.raises(FileNotFoundError, match="resume='require'"):
        train_sft(setup.new_model(), setup.train, None,
                  sft_setup.train_config(work, max_steps=5, resume="require"),
                  pad_id=setup.pad_id)


def test_early_stopping_keeps_the_best_weights(setup, tmp_path, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])
    monkeypatch.setattr(sft_module, "valid_loss", lambda *a, **k: next(scripted))
    at_step = {}

    def grab(info):
        if info.event == "step":
            at_step[info.step] = trainable_state(info.model)

    cfg = sft_setup.train_config(tmp_path / "w", max_steps=30, eval_every=2,
                                 early_stopping_patience=2, checkpoint_every=0)
    result = train_sft(setup.new_model(), setup.train, setup.valid, cfg, pad_id=setup.pad_id,
                       callbacks=[grab])
    s = result.summary
    assert s["stopped_early"] and s["steps"] == 8 and s["best_step"] == 4
    assert s["best_valid_loss"] == 2.0 and s["final_weights"] == "best"
    assert _same(trainable_state(result.model), at_step[4])
    assert not _same(trainable_state(result.model), at_step[6])


def test_stage2_starts_from_stage1_weights(setup, tmp_path):
    align_cfg = from_dict(AlignConfig, {
        "tokenizer": {"vocab_size": 400}, "backbone": {"preset": "tiny"},
        "train": {"max_steps": 4, "batch_size": 8, "max_length": 64, "eval_every": 2,
                  "work_dir": str(tmp_path / "align_work"), "progress_bar": False}}, "align")
    corpora = {"alignment_corpus": setup.alignment, "reasoning_corpus": setup.reasoning}
    tok = build_tokenizer(align_cfg, corpora, setup.table)
    assert "<think>" in tok.get_vocab() and "<c_3>" in tok.get_vocab()
    stage1, log1 = train_align(setup.alignment, tok, setup.table, align_cfg)
    assert log1 and stage1.extra["training"]["steps"] == 4
    assert set(stage1.extra["tokenization"]["tasks"][0]) == {"task", "len"}
    ds = HFCheckpointDataset(filepath=str(tmp_path / "align_model"))
    ds.save(stage1)
    final1 = trainable_state(stage1.model)
    loaded = ds.load()
    seen = {}

    def grab(info):
        seen.setdefault(info.event, trainable_state(info.model))

    reason_cfg = from_dict(ReasonConfig, {
        "train": {"max_steps": 3, "batch_size": 4, "max_length": 128, "eval_every": 0,
                  "work_dir": str(tmp_path / "reason_work"), "progress_bar": False}}, "reason")
    stage2, log2 = train_reason(loaded, setup.reasoning, reason_cfg, callbacks=[grab])
    assert _same(seen["begin"], final1)  # step 0 of Stage 2 == Stage 1's final weights
    assert not _same(trainable_state(stage2.model), final1, atol=1e-7)  # and it trained
    assert stage2.tokenizer is loaded.tokenizer and stage2.extra["from_stage"] == "align"
    assert log2[-1]["step"] == 3


def _save_tiny_pretrained(path, texts) -> None:
    """A tiny 'pretrained' Qwen2 + tokenizer: eos but no pad, no markers, no SID tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=350, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=64, tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id)).save_pretrained(path)
    tok.save_pretrained(path)


def test_pretrained_lora_backbone_through_both_stages(setup, tmp_path):
    _save_tiny_pretrained(tmp_path / "base", [*setup.alignment["prompt"]][:200])
    align_cfg = from_dict(AlignConfig, {
        "backbone": {"kind": "pretrained", "path": str(tmp_path / "base"),
                     "lora": {"enabled": True, "r": 4, "alpha": 8}},
        "train": {"max_steps": 3, "batch_size": 8, "max_length": 64, "eval_every": 0,
                  "work_dir": str(tmp_path / "align_work"), "progress_bar": False}}, "align")
    tok = build_tokenizer(align_cfg, {}, setup.table)
    assert tok.convert_ids_to_tokens(tok.encode("<b_2>", add_special_tokens=False)) == ["<b_2>"]
    stage1, _ = train_align(setup.alignment, tok, setup.table, align_cfg)
    extra = stage1.extra
    assert 0 < extra["trainable_parameters"] < extra["parameters"]
    assert extra["training"]["final_weights"] == "best"
    # the selective head also works through peft's wrappers, and equals the full path
    corpus, _ = tokenize_sft(setup.alignment["prompt"][:6].to_list(),
                             setup.alignment["response"][:6].to_list(), tok, 64)
    batch = collate_padded(corpus, range(6), tok.pad_token_id)
    selective, full = SFTLossModule(stage1.model, True), SFTLossModule(stage1.model, False)
    assert selective.selective
    with torch.no_grad():
        assert torch.allclose(selective(**batch), full(**batch), rtol=1e-5)
    ds = HFCheckpointDataset(filepath=str(tmp_path / "align_model"),
                             load_args={"is_trainable": True})
    ds.save(stage1)
    seen = {}
    reason_cfg = from_dict(ReasonConfig, {
        "train": {"max_steps": 2, "batch_size": 4, "max_length": 128, "eval_every": 0,
                  "work_dir": str(tmp_path / "reason_work"), "progress_bar": False}}, "reason")
    stage2, _ = train_reason(ds.load(), setup.reasoning, reason_cfg,
                             callbacks=[lambda i: seen.setdefault(i.event,
                                                                  trainable_state(i.model))])
    assert _same(seen["begin"], trainable_state(stage1.model))
    assert not _same(trainable_state(stage2.model), seen["begin"], atol=1e-8)
