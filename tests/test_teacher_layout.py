"""The step-aligned layout: exact spelling, round trips, and clear errors on malformed text."""

from __future__ import annotations

import re

import pytest

from sapo_pipeline.teacher.layout import (
    BLOCK_CLOSE,
    BLOCK_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    LayoutError,
    block_problem,
    clean_block,
    parse_steps,
    render_steps,
)


def test_exact_spelling():
    text = render_steps(["broad", "sub type", "the item"], [12, 7, 201])
    assert text == ("<think> broad </think><a_12><think> sub type </think><b_7>"
                    "<think> the item </think><c_201>")
    assert BLOCK_OPEN == THINK_OPEN + " " and BLOCK_CLOSE == " " + THINK_CLOSE


@pytest.mark.parametrize(
    ("blocks", "codes"),
    [
        (["a"], [0]),
        (["Gel pens, again.", "Retractable ones: 3 of 5!", "Blue 12-pack < 2 dollars"], [3, 0, 255]),
        (["line one\nline two", "x", "y", "z"], [1, 2, 3, 4]),
        (["uses <b> and a_12 and <think-like> words", "ok", "fine"], [10, 20, 30]),
    ],
)
def test_round_trip(blocks, codes):
    text = render_steps(blocks, codes)
    assert parse_steps(text) == (blocks, codes)
    assert parse_steps(text, levels=len(codes)) == (blocks, codes)


@pytest.mark.parametrize(
    ("text", "levels", "message"),
    [
        ("<think> a </think><a_1><think> b </think><b_2>", 3, "wrong number of blocks"),
        ("", None, "empty text"),
        ("x<think> a </think><a_1>", None, "expected '<think> '"),
        ("<think>a </think><a_1>", None, "expected '<think> '"),
        ("<think> a </think><a_1> <think> b </think><b_2>", None, "expected '<think> '"),
        ("<think> a <a_1>", None, "no closing"),
        ("<think> a </think>", None, "must be followed by a SID token"),
        ("<think> a </think>b", None, "must be followed by a SID token"),
        ("<think> a </think><b_1>", None, "out of level order"),
        ("<think> a </think><a_1><think> b </think><c_2>", None, "out of level order"),
        ("<think> a </think><a_01>", None, "must be followed by a SID token"),
        ("<think> it is <a_1> </think><a_1>", None, "sid_in_block"),
        ("<think>  a </think><a_1>", None, "surrounding_whitespace"),
        ("<think>  </think><a_1>", None, "empty_block"),
        ("<think> a <think> b </think><a_1>", None, "think_tag_in_block"),
        ("<think> a </think><a_1>trailing", None, "expected '<think> '"),
        ("<think> a </think><a_1><eos>", None, "expected '<think> '"),
    ],
)
def test_parse_errors(text, levels, message):
    with pytest.raises(LayoutError, match=re.escape(message)):
        parse_steps(text, levels=levels)


def test_render_errors():
    with pytest.raises(LayoutError, match="2 blocks for a 3-level SID"):
        render_steps(["a", "b"], [1, 2, 3])
    with pytest.raises(LayoutError, match="empty SID"):
        render_steps([], [])
    for bad, reason in [("", "empty_block"), (" a", "surrounding_whitespace"),
                        ("next is <a_3>", "sid_in_block"), ("< b _ 7 >", "sid_in_block"),
                        ("a </think> b", "think_tag_in_block")]:
        with pytest.raises(LayoutError, match=reason):
            render_steps([bad, "ok"], [1, 2])
        assert block_problem(bad) == reason
    with pytest.raises(ValueError, match="code must be >= 0"):
        render_steps(["a"], [-1])


def test_clean_block_makes_valid_blocks():
    raw = "  <think>Step  one:\tthe item <a_12><B_7> is\n\n\n  here </THINK>  "
    cleaned = clean_block(raw)
    assert cleaned == "Step one: the item is\nhere"
    assert block_problem(cleaned) is None
    assert clean_block("<a_1><b_2>") == ""
    assert parse_steps(render_steps([cleaned], [5])) == ([cleaned], [5])


def test_markers_match_the_tokenizer():
    tokenizer = pytest.importorskip("sapo_pipeline.model.tokenizer")
    assert (THINK_OPEN, THINK_CLOSE) == (tokenizer.THINK_OPEN, tokenizer.THINK_CLOSE)
