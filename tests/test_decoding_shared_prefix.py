"""The shared-prefix KV cache: the same logits as copied cache rows, with any row selection."""

from __future__ import annotations

import pytest
import torch
from decoding_fixtures import CloseBias, setup

from sapo_pipeline.decoding import KVSession, beam_sample, beam_search
from sapo_pipeline.decoding.qwen2_step import Qwen2Step
from sapo_pipeline.decoding.shared_prefix import (
    ATTENTION_NAME,
    SharedPrefixLayer,
    shared_prefix_cache,
)
from sapo_pipeline.model.backbone import BackboneConfig, build_model


def _models():
    s = setup()
    mha = s.model.eval()  # a wrapper's .train() in an earlier test reaches it
    gqa = build_model(BackboneConfig(preset="tiny", num_attention_heads=4, num_key_value_heads=2),
                      s.tokenizer, seed=1).eval()
    eager = build_model(BackboneConfig(preset="tiny", attn_implementation="eager"), s.tokenizer,
                        seed=2).eval()
    return s, {"mha": mha, "gqa": gqa, "eager": eager}


@pytest.mark.parametrize("subset_below", [0.0, 0.6, 1.01])  # every row / the heuristic / subset
@pytest.mark.parametrize("kind", ["mha", "gqa", "eager"])
def test_logits_equal_copied_rows_through_expansion_holes_and_compaction(
        kind: str, subset_below: float, monkeypatch) -> None:
    """Holes keep their logits and the fed rows' match copied cache rows whether the written
    step computes only the fed rows or every row (``KVSession.subset_below``)."""
    monkeypatch.setattr(KVSession, "subset_below", subset_below)
    s, models = _models()
    model = models[kind]
    before = model.config._attn_implementation
    prompts = s.prompts[:4]
    shared = KVSession(model, prompts, s.vocab.pad_id, reserve=4, share_prefix=True)
    plain = KVSession(model, prompts, s.vocab.pad_id, reserve=4, share_prefix=False)
    assert shared.shared and not plain.shared
    assert shared.fast is not None and plain.fast is None  # the written-out Qwen2 step
    assert isinstance(shared.cache.layers[0], SharedPrefixLayer)
    gen = torch.Generator().manual_seed(0)
    # expand unevenly (prompt 0 x3, prompt 1 x1, prompt 3 x2: prompt 2 dropped), then step with
    # holes, reorder, compact and step again, checking the logits at every step
    selections = [torch.tensor([0, 0, 0, 1, 3, 3]), None, torch.tensor([5, 1, 2, 0, 4, 3]), None,
                  torch.tensor([0, 2, 4]), None, torch.tensor([0, 0, 1, 1, 2, 2]), None]
    for sel in selections:
        if sel is not None:
            shared.select(sel)
            plain.select(sel)
        else:
            n = len(shared)
            tok = torch.randint(5, len(s.tokenizer), (n,), generator=gen)
            real = torch.rand(n, generator=gen) > 0.3
            a = shared.step(tok, real=real)
            b = plain.step(tok, real=real)
            torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    assert model.config._attn_implementation == before  # restored after every forward


def test_stepwise_beams_and_rere_rollouts_equal_copied_rows(monkeypatch) -> None:
    """Step-wise beam search (rows waiting for each other) and ReRe rollouts: same beams, same
    scores and log-probs with or without the shared prefix."""
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    got = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=4, reasoning=True,
                      max_think_tokens=4)
    ro = beam_sample(model, s.prompts, [s.codes[0]] * len(s.prompts), s.trie, s.vocab,
                     num_beams=4, reasoning=True, max_think_tokens=4)
    monkeypatch.setattr(KVSession, "share_prefix", False)
    ref = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=4, reasoning=True,
                      max_think_tokens=4)
    ro_ref = beam_sample(model, s.prompts, [s.codes[0]] * len(s.prompts), s.trie, s.vocab,
                         num_beams=4, reasoning=True, max_think_tokens=4)
    for a, b in zip(got, ref):
        assert [(h.codes, h.tokens) for h in a] == [(h.codes, h.tokens) for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-5)
    assert torch.equal(ro.sequences, ro_ref.sequences)
    torch.testing.assert_close(ro.old_logprobs, ro_ref.old_logprobs, atol=2e-5, rtol=1e-5)


def test_unsupported_models_fall_back_to_their_own_cache() -> None:
    s = setup()
    model = build_model(BackboneConfig(preset="tiny"), s.tokenizer, seed=0)
    model.config._attn_implementation = "flex_attention"
    assert shared_prefix_cache(model, 4) is None
    model.config._attn_implementation = "sdpa"
    assert shared_prefix_cache(model, 4) is not None
    assert shared_prefix_cache(object(), 4) is None  # no transformers config


def test_model_called_without_the_cache_is_plain_attention() -> None:
    """The registered attention delegates to sdpa when not handed the shared cache."""
    s = setup()
    model = s.model
    ids = torch.tensor([s.prompts[0]])
    ref = model(input_ids=ids).logits
    before = model.config._attn_implementation
    model.config._attn_implementation = ATTENTION_NAME
    try:
        got = model(input_ids=ids).logits
    finally:
        model.config._attn_implementation = before
    torch.testing.assert_close(got, ref)


def test_layer_slots_group_rows_by_prompt() -> None:
    layer = SharedPrefixLayer(reserve=2)
    k = torch.zeros(3, 1, 5, 2)
    layer.update(k, k)
    layer.batch_select_indices(torch.tensor([2, 0, 2, 2, 1, 0]))
    slot, width = layer.slots()
    assert width == 3
    # prompt 2 rows (0, 2, 3) -> slots 6, 7, 8; prompt 0 rows (1, 5) -> 0, 1; prompt 1 row 4 -> 3
    assert slot is not None and slot.tolist() == [6, 0, 7, 8, 3, 1]
    layer.batch_select_indices(torch.tensor([1, 5, 4, 4, 0, 2]))  # prompts 0, 0, 1, 1, 2, 2
    assert layer.row_prompt.tolist() == [0, 0, 1, 1, 2, 2]
    assert layer.slots() == (None, 2)  # already the [P, width] grid: no regrouping
    assert layer.get_seq_length() == 5
    with pytest.raises(NotImplementedError):
        layer.crop(-1)


@pytest.mark.parametrize("written", [True, False])
def test_tokens_decoded_before_expansion_join_the_prefix(written: bool, monkeypatch) -> None:
    """Steps while each prompt has one row (with holes), then expansion to beams: the decoded
    tokens move into the shared prefix and the logits stay those of copied rows."""
    monkeypatch.setattr(KVSession, "written_step", written)
    s, models = _models()
    model = models["gqa"]
    prompts = s.prompts[:3]
    shared = KVSession(model, prompts, s.vocab.pad_id, reserve=8, share_prefix=True)
    plain = KVSession(model, prompts, s.vocab.pad_id, reserve=8, share_prefix=False)
    gen = torch.Generator().manual_seed(1)
    lp = shared.cache.layers[0].prefix_length
    for step, sel in enumerate([None, None, None, torch.tensor([0, 0, 1, 1, 2, 2]), None,
                                torch.tensor([5, 4, 0, 1, 2, 3]), None]):
        if sel is not None:
            shared.select(sel)
            plain.select(sel)
            continue
        n = len(shared)
        tok = torch.randint(5, len(s.tokenizer), (n,), generator=gen)
        real = torch.tensor([True, step != 1, True] * (n // 3))
        torch.testing.assert_close(shared.step(tok, real=real), plain.step(tok, real=real),
                                   atol=2e-5, rtol=1e-5)
    layer = shared.cache.layers[0]
    assert layer.prefix_length == lp + 3  # the three pre-expansion steps, holes included
    assert layer.suffix_k.shape[-2] == 2  # one step after each of the two selections


def test_written_step_only_for_plain_eval_qwen2_models() -> None:
    s = setup()
    model = build_model(BackboneConfig(preset="tiny"), s.tokenizer, seed=0).eval()
    assert Qwen2Step.for_model(model) is not None
    assert Qwen2Step.for_model(model.train()) is None  # dropout etc.: the model's own forward
    model.eval()
    handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: None)
    assert Qwen2Step.for_model(model) is None  # hooks (adapters, probes) must run
    handle.remove()
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(model.forward)  # Accelerate
    assert Qwen2Step.for_model(model) is None
    assert Qwen2Step.for_model(object()) is None
    assert Qwen2Step.for_model(torch.nn.Linear(2, 2)) is None


def test_greedy_views_and_the_masked_copy_write_the_same_beams(monkeypatch) -> None:
    """``StepMachine.greedy_views`` off (the benchmark's former rule) changes no beam."""
    from sapo_pipeline.decoding.state_machine import StepMachine

    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    got = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=4, reasoning=True,
                      max_think_tokens=4)
    monkeypatch.setattr(StepMachine, "greedy_views", False)
    ref = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=4, reasoning=True,
                      max_think_tokens=4)
    assert [[(h.codes, h.tokens, h.score) for h in a] for a in got] == \
        [[(h.codes, h.tokens, h.score) for h in b] for b in ref]
