"""The step-aligned state machine, the SID vocab and the dense trie index (no model needed)."""

from __future__ import annotations

import pytest
import torch
from decoding_fixtures import CODEBOOK, LEVELS, setup

from sapo_pipeline.decoding import ConstraintError, ConstraintIndex, SIDVocab, StepMachine
from sapo_pipeline.decoding.state_machine import DONE, SID, THINK


def _machine(reasoning: bool = True, cap: int = 4, min_think: int = 1) -> StepMachine:
    s = setup()
    return StepMachine(ConstraintIndex.get(s.trie, s.vocab), s.vocab, reasoning=reasoning,
                       max_think_tokens=cap, min_think_tokens=min_think)


def _words(n: int) -> list[int]:
    ids = setup().tokenizer.encode(" the category is lamp office chair", add_special_tokens=False)
    assert len(ids) >= n
    return ids[:n]


def _sid_ids(codes) -> list[int]:
    return setup().vocab.codes_to_ids(codes)


def _single_and_multi() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A catalog SID whose last prefix has one child, and one whose prefixes all branch."""
    trie = setup().trie
    single = next(c for c in trie.sids() if len(trie.children(c[:2])) == 1)
    multi = next(c for c in trie.sids()
                 if all(len(trie.children(c[:k])) >= 2 for k in range(LEVELS)))
    return single, multi


def test_vocab_ids_and_missing_token_error() -> None:
    s = setup()
    vocab = SIDVocab.from_tokenizer(s.tokenizer, levels=LEVELS, codebook_size=CODEBOOK)
    for level in range(LEVELS):
        assert vocab.level_ids[level].tolist() == s.vocab.level_ids[level].tolist()
    assert vocab.think_open_id == s.tokenizer.convert_tokens_to_ids("<think>")
    assert vocab.eos_id == s.tokenizer.eos_token_id
    assert set(vocab.sid_ids.tolist()) == {vocab.token_id(k, c) for k in range(LEVELS)
                                           for c in range(CODEBOOK)}
    with pytest.raises(ValueError, match=r"<a_3>"):
        SIDVocab.from_tokenizer(s.tokenizer, levels=LEVELS, codebook_size=CODEBOOK + 1)
    with pytest.raises(ValueError, match="levels"):
        SIDVocab.from_tokenizer(s.tokenizer, levels=2, table=s.trie)


def test_index_matches_trie() -> None:
    s = setup()
    index = ConstraintIndex.get(s.trie, s.vocab)
    assert ConstraintIndex.get(s.trie, s.vocab) is index  # cached
    for node in range(index.num_nodes):
        prefix = index.prefix_of(node)
        kids = s.trie.children(prefix).tolist()
        assert index.children_ok[node].nonzero().flatten().tolist() == kids
        if len(prefix) + 1 < LEVELS:
            for c in kids:
                assert index.prefix_of(int(index.child_node[node, c])) == (*prefix, c)


@pytest.mark.parametrize("which", ["single", "multi"])
def test_reasoning_walk_forced_flags_and_steps(which: str) -> None:
    m = _machine(cap=4)
    single, multi = _single_and_multi()
    sid = single if which == "single" else multi
    v = setup().vocab
    response, expect = [], []  # (forced, step) per token
    for k, (code_tok, n_words) in enumerate(zip(_sid_ids(sid), (2, 1, 3))):
        response += [v.think_open_id, *_words(n_words), v.think_close_id, code_tok]
        n_kids = len(setup().trie.children(sid[:k]))
        expect += [(True, k)] + [(False, k)] * n_words + [(False, k), (n_kids == 1, k)]
    response.append(v.eos_id)
    expect.append((True, LEVELS - 1))
    st = m.start(1)
    for tok, (forced, step) in zip(response, expect):
        con = m.constraint(st)
        assert (bool(con.forced[0]), int(con.step[0])) == (forced, step)
        if forced:
            assert int(con.forced_token[0]) == tok
        m.advance(st, torch.tensor([tok]))
    assert int(st.phase[0]) == DONE
    assert tuple(st.codes[0].tolist()) == sid
    assert st.think_lengths[0].tolist() == [2, 1, 3]
    assert m.step_ids([response]) == [[s for _, s in expect]]
    assert int(m.constraint(st).step[0]) == -1


def test_cap_forces_close_and_counts() -> None:
    m = _machine(cap=2)
    v = setup().vocab
    st = m.replay([[v.think_open_id, *_words(2)]])
    con = m.constraint(st)
    assert bool(con.forced[0]) and int(con.forced_token[0]) == v.think_close_id
    with pytest.raises(ConstraintError, match="cap 2"):
        m.advance(st, torch.tensor([_words(3)[2]]))
    m.advance(st, torch.tensor([v.think_close_id]))
    assert int(st.cap_hits[0]) == 1 and int(st.phase[0]) == SID


def test_min_think_tokens_and_banned_tokens_in_block() -> None:
    v = setup().vocab
    with pytest.raises(ConstraintError, match="min 1"):
        _machine(min_think=1).replay([[v.think_open_id, v.think_close_id]])
    st = _machine(min_think=0).replay([[v.think_open_id, v.think_close_id]])
    assert int(st.phase[0]) == SID and st.think_lengths[0, 0] == 0
    for banned in (v.token_id(0, 0), v.token_id(2, 1), v.eos_id, v.think_open_id, v.pad_id):
        with pytest.raises(ConstraintError, match="banned inside a block"):
            _machine().replay([[v.think_open_id, *_words(1), banned]])


def test_dense_mask_in_block_and_at_sid_choice() -> None:
    m = _machine(cap=3, min_think=1)
    v, trie = setup().vocab, setup().trie
    width = len(setup().tokenizer)
    _, multi = _single_and_multi()
    rows = [[v.think_open_id], [v.think_open_id, *_words(1)],
            [v.think_open_id, *_words(1), v.think_close_id],
            [v.think_open_id, *_words(1), v.think_close_id, _sid_ids(multi)[0]]]
    st = m.replay(rows)
    mask = m.dense_mask(st, width)
    banned = [*v.sid_ids.tolist(), v.eos_id, v.think_open_id, v.pad_id]
    for r in (0, 1):
        assert int(st.phase[r]) == THINK
        assert not mask[r, banned].any()
        assert mask[r, _words(2)].all()
    assert not mask[0, v.think_close_id] and mask[1, v.think_close_id]  # min_think_tokens=1
    allowed = set(mask[2].nonzero().flatten().tolist())
    assert allowed == {v.token_id(0, c) for c in trie.children(()).tolist()}
    assert mask[3].nonzero().flatten().tolist() == [v.think_open_id]  # forced
    additive = m.logits_mask(st, width)
    assert torch.equal(additive == 0, mask)


def test_unknown_prefix_is_an_error() -> None:
    s = setup()
    prefixes = {c[:2] for c in s.trie.sids()}
    missing = next((a, b) for a in range(CODEBOOK) for b in range(CODEBOOK)
                   if (a, b) not in prefixes and s.trie.is_prefix((a,)))
    plain = _machine(reasoning=False)
    with pytest.raises(ConstraintError, match="not a prefix of any catalog item"):
        plain.replay([_sid_ids(missing)])
    with pytest.raises(KeyError):
        s.trie.children(missing)
    with pytest.raises(ConstraintError, match="not a SID token of level 0"):
        plain.replay([[s.vocab.token_id(1, 0)]])


def test_plain_mode_layout() -> None:
    m = _machine(reasoning=False)
    single, multi = _single_and_multi()
    v = setup().vocab
    for sid in (single, multi):
        response = [*_sid_ids(sid), v.eos_id]
        assert m.step_ids([response]) == [[0, 1, 2, 2]]
        st = m.start(1)
        forced = []
        for tok in response:
            forced.append(bool(m.constraint(st).forced[0]))
            m.advance(st, torch.tensor([tok]))
        kids = [len(setup().trie.children(sid[:k])) for k in range(LEVELS)]
        assert forced == [n == 1 for n in kids] + [True]
        assert int(st.phase[0]) == DONE
    with pytest.raises(ConstraintError, match="forced token"):
        m.replay([[*_sid_ids(multi), v.think_open_id]])
    with pytest.raises(ConstraintError, match="after eos"):
        m.replay([[*_sid_ids(multi), v.eos_id, v.eos_id]])


def test_max_response_tokens_and_bad_config() -> None:
    assert _machine(cap=4).max_response_tokens == LEVELS * 7 + 1
    assert _machine(reasoning=False).max_response_tokens == LEVELS + 1
    with pytest.raises(ValueError, match="min_think_tokens"):
        _machine(cap=2, min_think=3)


@pytest.mark.parametrize("scattered", [False, True])
@pytest.mark.parametrize("share", [1.0, 0.25])
def test_greedy_think_is_the_argmax_of_the_masked_logits_ties_included(scattered: bool,
                                                                     share: float) -> None:
    """The greedy block token over views of the free-text runs equals the argmax of the logits
    plus the think bias (</think> banned where a row may not close yet): the first maximum,
    with ties everywhere, </think> among them, for all rows or a subset of them."""
    m = _machine()
    width = m.vocab.vocab_size + 3  # a model vocabulary with padding rows past the tokenizer's
    if scattered:  # many runs: the masked-copy path
        m._think_ok[1:m.vocab.vocab_size:5] = False
        m._bias.clear()
        m._runs.clear()
    assert (len(m._think_runs(width)) > 8) == scattered
    gen = torch.Generator().manual_seed(0)
    n = 64
    logits = torch.randint(0, 3, (n, width), generator=gen).float()  # ties in every row
    logits[:, m.close_id] = torch.randint(2, 4, (n,), generator=gen).float()  # tie or win
    rows = torch.arange(n)[torch.rand(n, generator=gen) < share] if share < 1 else torch.arange(n)
    close_ok = torch.rand(len(rows), generator=gen) < 0.5
    ref = logits[rows] + m.think_bias(width)
    ref[:, m.close_id].masked_fill_(~close_ok, float("-inf"))
    got = m.greedy_think(logits, rows, close_ok)
    assert torch.equal(got, ref.argmax(-1))
    assert bool((got == m.close_id).any()) and bool((got != m.close_id).any())
