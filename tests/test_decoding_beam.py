"""Beam search (plain and step-wise), greedy decoding and ReRe beam rollouts vs naive references."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from decoding_fixtures import LEVELS, CloseBias, plain_logprobs, setup

from sapo_pipeline.decoding import (
    BeamConfig,
    ConstraintIndex,
    StepMachine,
    beam_sample,
    beam_search,
    greedy_decode,
)
from sapo_pipeline.decoding.state_machine import SID
from sapo_pipeline.decoding.tree import TreeSession
from sapo_pipeline.model.backbone import BackboneConfig, build_model

CAP = 4


def _machine(reasoning: bool) -> StepMachine:
    s = setup()
    return StepMachine(ConstraintIndex.get(s.trie, s.vocab), s.vocab, reasoning=reasoning,
                       max_think_tokens=CAP)


def _sid_scores(model, prompt: list[int], responses: list[list[int]]) -> list[float]:
    """Sum of the SID tokens' log-probs of each response, by a plain forward pass."""
    v = setup().vocab
    lps = plain_logprobs(model, [prompt] * len(responses), responses)
    return [float(sum(lp for lp, t in zip(lps[i].tolist(), r) if v.code_of(t) is not None))
            for i, r in enumerate(responses)]


def _reference_beam(model, prompt: list[int], num_beams: int, reasoning: bool
                    ) -> list[tuple[tuple[int, ...], float, list[int]]]:
    """Naive step-wise beam search: uncached forward passes, one beam at a time."""
    machine = _machine(reasoning)
    width = len(setup().tokenizer)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    for level in range(LEVELS):
        expanded = []
        for tokens, score in beams:
            tokens = list(tokens)
            while True:  # greedy thinking block under the machine's mask
                st = machine.replay([tokens])
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([prompt + tokens])).logits[0, -1]
                if int(st.phase[0]) == SID:
                    break
                masked = logits + machine.logits_mask(st, width)[0]
                tokens.append(int(masked.argmax()))
            lp = logits.log_softmax(-1)
            prefix = tuple(st.codes[0, :level].tolist())
            for code in setup().trie.children(prefix).tolist():
                tid = setup().vocab.token_id(level, code)
                expanded.append((tokens + [tid], score + float(lp[tid])))
        expanded.sort(key=lambda b: -b[1])
        beams = expanded[:num_beams]
    out = []
    for tokens, score in beams:
        codes = tuple(machine.replay([tokens]).codes[0].tolist())
        out.append((codes, score, tokens))
    return out


def test_plain_beam_equals_brute_force_top_b() -> None:
    """With B >= the number of prefixes at every level, beam search is exact: it must return the
    top-B catalog SIDs by total log-prob, as enumerating the whole catalog does."""
    s = setup()
    num_beams = 9  # codebook 3: at most 3 level-1 and 9 level-2 prefixes
    hits = beam_search(s.model, s.prompts, s.trie, s.vocab, num_beams=num_beams, batch_size=4)
    sids = s.trie.sids()
    for prompt, got in zip(s.prompts, hits):
        scores = _sid_scores(s.model, prompt, [s.vocab.codes_to_ids(c) for c in sids])
        ranked = sorted(zip(scores, sids), key=lambda x: -x[0])[:num_beams]
        assert [h.codes for h in got] == [c for _, c in ranked]
        assert [h.score for h in got] == pytest.approx([sc for sc, _ in ranked], abs=2e-5)


def test_excluded_sids_never_come_back_and_the_rest_keep_their_order() -> None:
    """``exclude``: with B large enough to be exact, the beams are the brute-force ranking of
    the catalog minus each prompt's excluded SIDs; step-wise (reasoning) beams drop exactly the
    excluded SIDs of the unrestricted search when B spans the catalog."""
    s = setup()
    sids = s.trie.sids()
    exclude = [[sids[(3 * j) % len(sids)], sids[(3 * j + 1) % len(sids)]] for j in
               range(len(s.prompts))]
    exclude[0] = []  # a prompt with nothing to exclude
    hits = beam_search(s.model, s.prompts, s.trie, s.vocab, num_beams=9, batch_size=4,
                       exclude=exclude)
    for prompt, got, ban in zip(s.prompts, hits, exclude, strict=True):
        scores = _sid_scores(s.model, prompt, [s.vocab.codes_to_ids(c) for c in sids])
        ranked = [c for _, c in sorted(zip(scores, sids), key=lambda x: -x[0]) if c not in ban]
        assert [h.codes for h in got] == ranked[:9]
    model = CloseBias(s.model, s.vocab.think_close_id)
    every = len(sids)
    free = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=every, reasoning=True,
                       max_think_tokens=CAP)
    cut = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=every, reasoning=True,
                      max_think_tokens=CAP, exclude=exclude)
    for a, b, ban in zip(free, cut, exclude, strict=True):
        assert [h.codes for h in b] == [h.codes for h in a if h.codes not in ban]
    with pytest.raises(ValueError, match="lists for"):
        beam_search(s.model, s.prompts, s.trie, s.vocab, exclude=exclude[:1])


def test_plain_beam_small_b_equals_naive_beam() -> None:
    s = setup()
    hits = beam_search(s.model, s.prompts, s.trie, s.vocab, num_beams=2, batch_size=4)
    for prompt, got in zip(s.prompts, hits):
        ref = _reference_beam(s.model, prompt, 2, reasoning=False)
        assert [h.codes for h in got] == [c for c, _, _ in ref]
        assert [h.score for h in got] == pytest.approx([sc for _, sc, _ in ref], abs=2e-5)


def test_more_beams_than_items_gives_every_item_once() -> None:
    s = setup()
    hits = beam_search(s.model, s.prompts[:2], s.trie, s.vocab, num_beams=20)
    for got in hits:
        assert len(got) == len(s.trie)
        assert sorted(h.codes for h in got) == sorted(s.trie.sids())
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)


def test_stepwise_beam_valid_capped_and_equal_to_naive_reference() -> None:
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    hits = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=3, reasoning=True,
                       max_think_tokens=CAP, batch_size=3)
    machine = _machine(True)
    block_lengths = set()
    for prompt, got in zip(s.prompts, hits):
        assert len(got) == 3 and len({h.codes for h in got}) == 3
        for h in got:
            assert h.codes in s.trie
            st = machine.replay([list(h.tokens)])  # layout, trie and cap respected
            assert int(st.phase[0]) == 3  # eos next
            assert (st.think_lengths[0] <= CAP).all()
            block_lengths.update(st.think_lengths[0].tolist())
        assert [h.score for h in got] == pytest.approx(
            _sid_scores(model, prompt, [list(h.tokens) for h in got]), abs=3e-5)
        ref = _reference_beam(model, prompt, 3, reasoning=True)
        assert [h.codes for h in got] == [c for c, _, _ in ref]
        assert [list(h.tokens) for h in got] == [t for _, _, t in ref]
    assert len(block_lengths) > 1  # beams waited for each other (cache holes were exercised)


@pytest.mark.parametrize("reasoning", [False, True])
def test_greedy_is_beam_of_one(reasoning: bool) -> None:
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    greedy = greedy_decode(model, s.prompts, s.trie, s.vocab, reasoning=reasoning,
                           max_think_tokens=CAP, batch_size=4)
    beams = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=1, reasoning=reasoning,
                        max_think_tokens=CAP)
    for g, b, prompt in zip(greedy, beams, s.prompts):
        assert (g.codes, g.tokens) == (b[0].codes, b[0].tokens)
        assert g.score == pytest.approx(b[0].score, abs=1e-6)
        ref = _reference_beam(model, prompt, 1, reasoning)
        assert g.codes == ref[0][0] and list(g.tokens) == ref[0][2]
        if reasoning:
            assert g.text.count("<think>") == LEVELS and g.text.count("</think>") == LEVELS
            assert len(g.think_lengths) == LEVELS
            assert g.cap_hits == sum(n == CAP for n in g.think_lengths)
        else:
            assert g.think_lengths == () and "<think>" not in g.text


@pytest.mark.parametrize("reasoning", [False, True])
def test_beam_sample_rollout(reasoning: bool) -> None:
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    g = 4
    targets = [s.codes[i] for i in range(len(s.prompts))]
    ro = beam_sample(model, s.prompts, targets, s.trie, s.vocab, num_beams=g,
                     reasoning=reasoning, max_think_tokens=CAP, batch_size=4)
    ro.validate()
    hits = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=g, reasoning=reasoning,
                       max_think_tokens=CAP)
    assert ro.beam_rank.tolist() == list(range(g)) * len(s.prompts)
    assert ro.group_index.tolist() == [i for i in range(len(s.prompts)) for _ in range(g)]
    assert [tuple(c) for c in ro.sid_codes.tolist()] == [h.codes for hs in hits for h in hs]
    v = s.vocab
    rows = range(ro.sequences.shape[0])
    responses = [ro.sequences[r][ro.response_mask[r]].tolist() for r in rows]
    ref = plain_logprobs(model, [s.prompts[int(ro.group_index[r])] for r in rows], responses)
    for r in rows:
        resp = responses[r]
        assert resp[-1] == v.eos_id and ro.step_ids[r][ro.response_mask[r]][-1] == LEVELS - 1
        sampled = ro.sampled_mask[r][ro.response_mask[r]]
        assert not sampled[-1]
        for i, tok in enumerate(resp):
            if tok == v.think_open_id:
                assert not sampled[i]
        got = ro.old_logprobs[r][ro.response_mask[r]]
        assert torch.allclose(got, ref[r], atol=3e-5, rtol=0)


def test_beam_sample_needs_enough_items() -> None:
    s = setup()
    with pytest.raises(ValueError, match="fewer than"):
        beam_sample(s.model, s.prompts[:1], [s.codes[0]], s.trie, s.vocab, num_beams=13)


def test_tree_and_row_copy_paths_agree() -> None:
    """Plain beams as branches of one cache row (4-d masks) == beams as copied cache rows, for
    sdpa and eager attention."""
    s = setup()
    eager = build_model(BackboneConfig(preset="tiny", attn_implementation="eager"), s.tokenizer,
                        seed=0).eval()
    ref = beam_search(s.model, s.prompts, s.trie, s.vocab, num_beams=4, tree_decoding=False)
    for model in (s.model, eager):
        got = beam_search(model, s.prompts, s.trie, s.vocab, num_beams=4, tree_decoding=True)
        for a, b in zip(got, ref):
            assert [h.codes for h in a] == [h.codes for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-5)


def test_tree_session_rejects_rows_from_another_prompt() -> None:
    s = setup()
    sess = TreeSession(s.model, s.prompts[:2], s.vocab.pad_id, reserve=8)
    sess.select(torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="left its prompt"):
        sess.select(torch.tensor([0, 2, 2, 3]))
    with pytest.raises(ValueError, match="no holes"):
        sess.step(torch.tensor([5, 5, 5, 5]), real=torch.tensor([True, False, True, True]))


def test_beam_config_passes_through_and_validates() -> None:
    s = setup()
    cfg = BeamConfig(num_beams=3, batch_size=2)
    via_cfg = beam_search(s.model, s.prompts[:3], s.trie, s.vocab, **asdict(cfg))
    direct = beam_search(s.model, s.prompts[:3], s.trie, s.vocab, num_beams=3)
    assert [[h.codes for h in hs] for hs in via_cfg] == [[h.codes for h in hs] for hs in direct]
    with pytest.raises(ValueError, match="min_think_tokens"):
        BeamConfig(max_think_tokens=2, min_think_tokens=3)
