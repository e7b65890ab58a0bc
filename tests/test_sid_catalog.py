"""SID spelling, the SID table and the prefix trie."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.sid.catalog import (
    SIDTrie,
    build_sid_table,
    format_sid,
    parse_sid,
    sid_tokens,
)

CODES = np.array(
    [
        [1, 2, 3],
        [1, 2, 4],
        [1, 5, 0],
        [7, 0, 0],
        [7, 0, 255],
    ],
    dtype=np.int64,
)
ITEMS = np.array([10, 11, 12, 13, 14])


def test_format_sid_spelling():
    assert format_sid((12, 7, 201)) == "<a_12><b_7><c_201>"
    assert format_sid(np.array([0, 0, 0, 3])) == "<a_0><b_0><c_0><d_3>"


@pytest.mark.parametrize("codes", [(0,), (12, 7, 201), (255, 0, 9, 1), tuple(range(26))])
def test_format_parse_round_trip(codes):
    s = format_sid(codes)
    assert parse_sid(s) == codes
    assert format_sid(parse_sid(s)) == s


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "<a_1><c_2>",  # skipped level
        "<b_1>",  # does not start at a
        "<a_01>",  # leading zero (not canonical)
        "<a_1> <b_2>",  # space between tokens
        "<a_-1>",
        "<a_1><b_2",  # truncated
        "a_1",
        "<A_1>",
        "<a_1><b_2>x",
    ],
)
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError, match="SID|parse_sid"):
        parse_sid(bad)


def test_parse_error_names_position():
    with pytest.raises(ValueError, match="character 5"):
        parse_sid("<a_1><c_2>")
    with pytest.raises(TypeError):
        parse_sid(("<a_1>",))  # type: ignore[arg-type]


def test_format_rejects_negative_and_empty():
    with pytest.raises(ValueError):
        format_sid([1, -2])
    with pytest.raises(ValueError):
        format_sid([])


def test_sid_tokens_lists_every_token_once():
    toks = sid_tokens(3, 4)
    assert len(toks) == 12 and len(set(toks)) == 12
    assert toks[:4] == ["<a_0>", "<a_1>", "<a_2>", "<a_3>"] and toks[-1] == "<c_3>"
    extra = sid_tokens(3, 4, extra_level_size=2)
    assert extra[-2:] == ["<d_0>", "<d_1>"]
    with pytest.raises(ValueError):
        sid_tokens(0, 4)


def test_build_sid_table_columns_and_order():
    order = np.array([4, 2, 0, 1, 3])
    table = build_sid_table(ITEMS[order], CODES[order])
    assert table.columns == ["item_id", "codes", "sid", "code_0", "code_1", "code_2"]
    assert table.schema["codes"] == pl.List(pl.Int64)
    assert table["item_id"].to_list() == ITEMS.tolist()  # sorted by item id
    assert table["sid"][0] == "<a_1><b_2><c_3>"
    assert table["code_2"].to_list() == CODES[:, 2].tolist()
    with pytest.raises(ValueError, match="not unique"):
        build_sid_table([1, 1], [[0, 0], [0, 1]])
    with pytest.raises(ValueError, match="item ids"):
        build_sid_table([1, 2, 3], [[0, 0], [0, 1]])


def test_trie_children():
    trie = SIDTrie.from_table(build_sid_table(ITEMS, CODES))
    assert trie.children(()).tolist() == [1, 7]
    assert trie.children((1,)).tolist() == [2, 5]
    assert trie.children((1, 2)).tolist() == [3, 4]
    assert trie.children((7, 0)).tolist() == [0, 255]
    assert trie.children(np.array([7, 0])).tolist() == [0, 255]
    assert trie.children((1, 2, 3)).tolist() == []  # a leaf: no further code
    assert trie.children("<a_1><b_5>").tolist() == [0]
    assert trie.children((1,)).dtype == np.int64
    with pytest.raises(ValueError):
        trie.children((1,))[0] = 9  # read-only: callers cannot corrupt the trie


@pytest.mark.parametrize("prefix", [(2,), (1, 3), (1, 2, 5), (7, 0, 1), (1, 2, 3, 0)])
def test_trie_unknown_prefix_raises(prefix):
    trie = SIDTrie(ITEMS, CODES)
    with pytest.raises(KeyError):
        trie.children(prefix)
    assert not trie.is_prefix(prefix)


def test_trie_items_and_membership():
    trie = SIDTrie(ITEMS, CODES)
    assert len(trie) == 5 and trie.levels == 3
    assert trie.item_of((7, 0, 255)) == 14
    assert trie.item_of("<a_1><b_2><c_4>") == 11
    assert (1, 2, 3) in trie and "<a_7><b_0><c_0>" in trie
    assert (1, 2) not in trie and (1, 2, 9) not in trie and "garbage" not in trie
    assert trie.is_prefix(()) and trie.is_prefix((1, 2)) and trie.is_prefix((1, 2, 3))
    with pytest.raises(KeyError):
        trie.item_of((1, 2))


def test_trie_rejects_duplicate_sids():
    with pytest.raises(ValueError, match="resolve collisions"):
        SIDTrie([0, 1], [[1, 2, 3], [1, 2, 3]])


def test_trie_serialisation_round_trip():
    trie = SIDTrie(ITEMS, CODES)
    data = json.loads(json.dumps(trie.to_dict()))
    back = SIDTrie.from_dict(data)
    assert back.sids() == trie.sids()
    for sid in trie.sids():
        assert back.item_of(sid) == trie.item_of(sid)
        for depth in range(3):
            assert back.children(sid[:depth]).tolist() == trie.children(sid[:depth]).tolist()


def test_from_table_rejects_ragged_sids():
    table = pl.DataFrame(
        {"item_id": [0, 1], "codes": [[1, 2, 3], [1, 2]]},
        schema={"item_id": pl.Int64, "codes": pl.List(pl.Int64)},
    )
    with pytest.raises(ValueError, match="different lengths"):
        SIDTrie.from_table(table)
