"""The group sampler: Rollout layout, masks, log-probs vs a naive decode, sampling law, seeds."""

from __future__ import annotations

import math

import pytest
import torch
from decoding_fixtures import LEVELS, CloseBias, TableModel, plain_logprobs, setup

from sapo_pipeline.decoding import ConstraintIndex, SamplerConfig, StepMachine, sample_groups
from sapo_pipeline.decoding.sampler import draw

CAP = 5


def _targets(n: int) -> list[tuple[int, ...]]:
    codes = setup().codes
    return [codes[i % len(codes)] for i in range(n)]


def _reasoning_rollout(seed: int = 0, **kw):
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    cfg = SamplerConfig(group_size=4, max_think_tokens=CAP, batch_size=2, seed=seed, **kw)
    return model, sample_groups(model, s.prompts, _targets(len(s.prompts)), s.trie, s.vocab, cfg)


def _response(ro, r: int) -> list[int]:
    return ro.sequences[r][ro.response_mask[r]].tolist()


def test_rollout_layout_masks_and_steps() -> None:
    s = setup()
    _, ro = _reasoning_rollout()
    ro.validate()
    p, g = len(s.prompts), 4
    assert ro.sequences.shape[0] == p * g
    assert ro.group_index.tolist() == [i for i in range(p) for _ in range(g)]
    assert ro.target_codes.tolist() == [list(t) for t in _targets(p) for _ in range(g)]
    machine = StepMachine(ConstraintIndex.get(s.trie, s.vocab), s.vocab, reasoning=True,
                          max_think_tokens=CAP)
    v = s.vocab
    lengths = set()
    for r in range(p * g):
        plen = int(ro.prompt_lengths[r])
        assert ro.sequences[r, :plen].tolist() == s.prompts[int(ro.group_index[r])]
        assert not ro.response_mask[r, :plen].any()
        resp = _response(ro, r)
        assert int(ro.attention_mask[r].sum()) == plen + len(resp)
        assert ro.response_mask[r, plen:plen + len(resp)].all()  # contiguous after the prompt
        st = machine.replay([resp])  # obeys the layout and the trie
        assert int(st.phase[0]) == 4
        assert tuple(st.codes[0].tolist()) == tuple(ro.sid_codes[r].tolist())
        assert tuple(ro.sid_codes[r].tolist()) in s.trie
        steps = ro.step_ids[r][ro.response_mask[r]].tolist()
        assert steps == machine.step_ids([resp])[0]
        assert steps[-1] == LEVELS - 1 and resp[-1] == v.eos_id
        sampled = ro.sampled_mask[r][ro.response_mask[r]].tolist()
        think_len = 0
        for i, tok in enumerate(resp):
            if tok == v.think_open_id:
                assert not sampled[i]
                think_len = 0
            elif tok == v.eos_id:
                assert not sampled[i]
            elif tok == v.think_close_id:
                assert sampled[i] == (think_len < CAP)  # forced at the cap only
                lengths.add(think_len)
            elif v.code_of(tok) is not None:
                level, _ = v.code_of(tok)
                kids = s.trie.children(tuple(ro.sid_codes[r, :level].tolist()))
                assert sampled[i] == (len(kids) >= 2)  # a single child is forced
                assert int(ro.sid_codes[r, level]) in kids.tolist()
            else:
                assert sampled[i]
                think_len += 1
        assert len(resp) <= machine.max_response_tokens
    assert len(lengths) > 1  # blocks of different lengths: rows did not move in lock-step
    assert ro.stats["rows"] == p * g and ro.stats["response_tokens"] > 0


@pytest.mark.parametrize("reasoning,tree", [(True, True), (False, True), (False, False)])
def test_old_logprobs_match_a_plain_forward(reasoning: bool, tree: bool) -> None:
    """Shared prefill + cache expansion (or tree branches) + holes + compaction give the same
    log-probs as decoding each row alone: recompute them with one plain forward per row."""
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    ro = sample_groups(model, s.prompts, _targets(len(s.prompts)), s.trie, s.vocab,
                       group_size=3, reasoning=reasoning, max_think_tokens=CAP, batch_size=4,
                       compact_below=0.9, tree_decoding=tree)
    rows = range(ro.sequences.shape[0])
    prompts = [s.prompts[int(ro.group_index[r])] for r in rows]
    responses = [_response(ro, r) for r in rows]
    ref = plain_logprobs(model, prompts, responses)
    for r in rows:
        got = ro.old_logprobs[r][ro.response_mask[r]]
        assert torch.allclose(got, ref[r], atol=2e-5, rtol=0), (r, (got - ref[r]).abs().max())
    assert (ro.old_logprobs[~ro.response_mask] == 0).all()


def test_seeded_determinism_and_compaction_invariance() -> None:
    _, a = _reasoning_rollout(seed=7)
    _, b = _reasoning_rollout(seed=7)
    _, c = _reasoning_rollout(seed=8)
    _, d = _reasoning_rollout(seed=7, compact_below=0.0)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.old_logprobs, b.old_logprobs)
    assert not torch.equal(a.sequences, c.sequences)
    assert torch.equal(a.sequences, d.sequences)
    assert torch.allclose(a.old_logprobs, d.old_logprobs, atol=1e-5)


def _level0_model(logit_by_code: dict[int, float]) -> TableModel:
    """Plain-mode fake: at the first SID position the given logits on level-0 codes, +9 on
    everything else (forbidden: eos, other levels, text); elsewhere flat."""
    v = setup().vocab
    plen = len(setup().prompts[0])
    size = len(setup().tokenizer)

    def score(hist: list[int]) -> torch.Tensor:
        out = torch.zeros(size)
        if len(hist) == plen:
            out[:] = 9.0
            for code, logit in logit_by_code.items():
                out[v.token_id(0, code)] = logit
        return out

    return TableModel(size, score)


@pytest.mark.parametrize("counter", [False, True])
@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6)])
def test_sid_choice_follows_the_masked_distribution(temperature: float, top_p: float,
                                                     counter: bool) -> None:
    s = setup()
    kids = s.trie.children(()).tolist()
    assert len(kids) >= 2
    probs = torch.tensor([0.5, 0.3, 0.2][: len(kids)])
    probs = probs / probs.sum()
    model = _level0_model({c: math.log(float(p)) for c, p in zip(kids, probs)})
    n = 3000
    ro = sample_groups(model, [s.prompts[0]], [s.codes[0]], s.trie, s.vocab, reasoning=False,
                       group_size=n, temperature=temperature, top_p=top_p, batch_size=1,
                       prompt_seeds=[5] if counter else None)
    want = probs ** (1.0 / temperature)
    want = want / want.sum()
    if top_p < 1.0:
        keep = (torch.cumsum(want, 0) - want) < top_p
        want = torch.where(keep, want, 0.0)
        want = want / want.sum()
    got = torch.tensor([float((ro.sid_codes[:, 0] == c).float().mean()) for c in kids])
    assert torch.allclose(got, want, atol=0.035), (got, want)
    # full-vocabulary log-prob of the first SID token, with the +9 entries in the normaliser
    first = ro.prompt_lengths[0]
    size = len(s.tokenizer)
    lse = torch.logsumexp(torch.cat([torch.log(probs), torch.full((size - len(kids),), 9.0)]), 0)
    code0 = ro.sid_codes[:, 0]
    expect = torch.log(probs)[torch.tensor([kids.index(int(c)) for c in code0])] - lse
    assert torch.allclose(ro.old_logprobs[:, first], expect, atol=1e-5)


def test_fake_model_wanting_forbidden_tokens_still_gets_the_layout() -> None:
    s = setup()
    v = s.vocab
    size = len(s.tokenizer)
    bad = torch.zeros(size)
    bad[v.sid_ids] = 20.0
    bad[[v.eos_id, v.think_open_id, v.pad_id]] = 25.0
    model = TableModel(size, lambda hist: bad)
    cap = 3
    ro = sample_groups(model, s.prompts[:2], _targets(2), s.trie, s.vocab, group_size=5,
                       max_think_tokens=cap, temperature=1.0)
    machine = StepMachine(ConstraintIndex.get(s.trie, v), v, reasoning=True,
                          max_think_tokens=cap)
    for r in range(ro.sequences.shape[0]):
        resp = _response(ro, r)
        st = machine.replay([resp])
        assert int(st.phase[0]) == 4 and resp.count(v.eos_id) == 1
        assert (st.think_lengths[0] <= cap).all()


def test_bad_inputs() -> None:
    s = setup()
    with pytest.raises(ValueError, match="not a catalog SID"):
        sample_groups(s.model, s.prompts[:1], [(9, 9, 9)], s.trie, s.vocab, group_size=2)
    with pytest.raises(ValueError, match="empty"):
        sample_groups(s.model, [[]], [s.codes[0]], s.trie, s.vocab, group_size=2)
    with pytest.raises(ValueError, match="top_p"):
        SamplerConfig(top_p=0.0)


def test_draw_never_picks_a_masked_entry_even_at_the_edges(monkeypatch) -> None:
    neg = float("-inf")
    scores = torch.tensor([[neg, 0.0, 1.0, neg, neg], [2.0, neg, neg, neg, neg],
                           [neg, neg, neg, neg, 0.5]]).repeat(50, 1)
    gen = torch.Generator().manual_seed(0)
    got = draw(scores, 1.0, 1.0, gen)
    allowed = torch.isfinite(scores)
    assert allowed[torch.arange(len(got)), got].all()
    for u in (0.0, 1.0 - 2.0 ** -24):  # the extreme uniforms
        monkeypatch.setattr(torch, "rand", lambda shape, generator=None, u=u: torch.full(shape, u))
        got = draw(scores, 1.0, 1.0, gen)
        assert allowed[torch.arange(len(got)), got].all()
    monkeypatch.undo()
    assert draw(scores, 0.0, 1.0, None)[:3].tolist() == [2, 0, 4]  # temperature 0: argmax


def test_counter_uniforms_are_uniform_and_keyed() -> None:
    from sapo_pipeline.decoding.sampler import counter_uniforms, row_keys

    keys = row_keys([3, 4], 5)
    assert keys.shape == (10,) and len(set(keys.tolist())) == 10
    assert torch.equal(row_keys([3, 4], 5)[5:], row_keys([4], 5))  # a prompt's keys alone
    n = 200_000
    u = counter_uniforms(torch.full((n,), int(keys[0])), torch.arange(n))
    assert u.dtype == torch.float32 and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    counts = torch.histc(u, bins=20, min=0.0, max=1.0)
    assert float((counts / (n / 20) - 1).abs().max()) < 0.03  # flat within 3% per bin
    assert abs(float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])) < 0.01
    other = counter_uniforms(torch.full((n,), int(keys[1])), torch.arange(n))
    assert abs(float(torch.corrcoef(torch.stack([u, other]))[0, 1])) < 0.01


@pytest.mark.parametrize("reasoning", [True, False])
def test_prompt_seeds_make_a_prompts_samples_independent_of_the_batch(reasoning: bool) -> None:
    """With one seed per prompt, a prompt's G samples are the same sampled alone, with other
    prompts, in another order or another batch size (what multi-process RL relies on)."""
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    targets = _targets(len(s.prompts))
    seeds = [11 + 1000 * i for i in range(len(s.prompts))]
    kw = dict(group_size=4, reasoning=reasoning, max_think_tokens=CAP, temperature=1.0)
    every = sample_groups(model, s.prompts, targets, s.trie, s.vocab, batch_size=4,
                          prompt_seeds=seeds, **kw)

    def rows_of(ro, g):
        rows = (ro.group_index == g).nonzero().flatten().tolist()
        return [_response(ro, r) for r in rows]

    for i in (0, 3, 5):
        alone = sample_groups(model, [s.prompts[i]], [targets[i]], s.trie, s.vocab,
                              batch_size=1, prompt_seeds=[seeds[i]], **kw)
        assert rows_of(alone, 0) == rows_of(every, i)
    back = list(reversed(range(len(s.prompts))))
    rev = sample_groups(model, [s.prompts[i] for i in back], [targets[i] for i in back], s.trie,
                        s.vocab, batch_size=2, prompt_seeds=[seeds[i] for i in back], **kw)
    for pos, i in enumerate(back):
        assert rows_of(rev, pos) == rows_of(every, i)
    moved = sample_groups(model, s.prompts, targets, s.trie, s.vocab, batch_size=4,
                          prompt_seeds=[x + 1 for x in seeds], **kw)
    assert any(rows_of(moved, i) != rows_of(every, i) for i in range(len(s.prompts)))
    with pytest.raises(ValueError, match="prompt seeds"):
        sample_groups(model, s.prompts, targets, s.trie, s.vocab, prompt_seeds=seeds[:2], **kw)


def test_greedy_thinking_keeps_the_blocks_of_the_sid_choices() -> None:
    """think_temperature 0: a block is the argmax continuation of what precedes it, so rows of a
    prompt that chose the same SID prefix wrote the same blocks, and the SIDs still vary."""
    s = setup()
    model = CloseBias(s.model, s.vocab.think_close_id)
    ro = sample_groups(model, s.prompts, _targets(len(s.prompts)), s.trie, s.vocab,
                       group_size=16, max_think_tokens=CAP, think_temperature=0.0,
                       prompt_seeds=list(range(len(s.prompts))))
    by_prefix: dict = {}
    for r in range(ro.sequences.shape[0]):
        resp = _response(ro, r)
        first_block = resp[:resp.index(s.vocab.think_close_id) + 1]
        by_prefix.setdefault(int(ro.group_index[r]), set()).add(tuple(first_block))
    assert all(len(blocks) == 1 for blocks in by_prefix.values())  # level 1: one greedy block
    assert any(len({tuple(c) for c in ro.sid_codes[ro.group_index == g].tolist()}) > 1
               for g in range(len(s.prompts)))
    with pytest.raises(ValueError, match="think_temperature"):
        SamplerConfig(think_temperature=-1.0)
