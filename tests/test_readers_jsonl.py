"""The shared JSON-lines core: fast path on clean files, exact rejects on dirty ones."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers.jsonl import FieldSpec, read_jsonl
from sapo_pipeline.data.schema import REJECT_SCHEMA

SPECS = [
    FieldSpec("user_id", required=True),
    FieldSpec("asin", path=("parent_asin",), required=True),
    FieldSpec("timestamp", pl.Int64, required=True),
    FieldSpec("rating", pl.Float64),
    FieldSpec("tags", pl.List(pl.Utf8)),
    FieldSpec("details_brand", path=("details", "Brand")),
    FieldSpec("brand", path=("store",), fallback="details_brand"),
]


def rec(i: int, **kw) -> dict:
    base = {
        "user_id": f"U{i}",
        "parent_asin": f"P{i}",
        "timestamp": 1000 + i,
        "rating": 4,
        "tags": ["a", "b"],
        "store": "S",
        "details": {"Brand": "B", "Other": [1, {"x": 2}]},
        "text": "ignored",
    }
    base.update(kw)
    return base


def write(path: Path, lines: list, gz: bool = False) -> Path:
    data = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def rejects_of(res) -> list[tuple]:
    return [(r["line"], r["field"], r["reason"]) for r in res.rejects.iter_rows(named=True)]


def check_identity(res) -> None:
    assert res.lines_read == res.frame.height + res.rejects.height
    assert res.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert set(res.rejects["file"].to_list()) <= {res.file}


def test_clean_file_takes_fast_path_and_converts(tmp_path):
    res = read_jsonl(
        write(tmp_path / "r.jsonl", [rec(1), rec(2, store="", rating=None)]),
        SPECS,
        expected="reviews",
    )
    assert res.fast_path and res.lines_read == 2 and res.rejects.height == 0
    assert res.frame.columns == [s.name for s in SPECS] + ["line"]
    row1, row2 = res.frame.to_dicts()
    assert row1 == {
        "user_id": "U1",
        "asin": "P1",
        "timestamp": 1001,
        "rating": 4.0,
        "tags": ["a", "b"],
        "details_brand": "B",
        "brand": "S",
        "line": 1,
    }
    assert row2["brand"] == "B"  # blank store -> details.Brand fallback
    assert row2["rating"] is None


def test_numeric_looking_strings_stay_on_fast_path(tmp_path):
    res = read_jsonl(
        write(tmp_path / "r.jsonl", [rec(1, parent_asin="0123456789", user_id="7")]),
        SPECS,
        expected="reviews",
    )
    assert res.fast_path and res.frame["asin"].to_list() == ["0123456789"]


@pytest.mark.parametrize("gz", [False, True])
def test_missing_required_field_on_fast_path(tmp_path, gz):
    bad = rec(2)
    del bad["parent_asin"]
    res = read_jsonl(
        write(tmp_path / "r.jsonl.gz", [rec(1), bad, rec(3, user_id="  ")], gz=gz),
        SPECS,
        expected="reviews",
    )
    assert res.fast_path
    assert rejects_of(res) == [(2, "parent_asin", "missing_field"), (3, "user_id", "missing_field")]
    assert res.frame["line"].to_list() == [1]
    check_identity(res)


def test_every_bad_kind_gets_its_exact_line_and_reason(tmp_path):
    lines = [
        rec(1),
        b'{"user_id": "U2", "parent_asin": ',  # 2 malformed
        b"",  # 3 blank
        rec(4, user_id=44),  # 4 int where string expected
        b'{"user_id": "U5\xff\xfe", "parent_asin": "P5", "timestamp": 5}',  # 5 bad bytes
        rec(6, timestamp="1600"),  # 6 string where int expected
        {k: v for k, v in rec(7).items() if k != "timestamp"},  # 7 missing timestamp
        rec(8, tags=["ok", 3]),  # 8 list element of wrong type
        rec(9, details="not an object"),  # 9 wrong container type
        [1, 2],  # 10 not an object
        b"   ",  # 11 whitespace only
        rec(12, rating=True),  # 12 bool where float expected
        rec(13),
    ]
    res = read_jsonl(write(tmp_path / "dirty.jsonl", lines), SPECS, expected="reviews")
    assert not res.fast_path
    assert rejects_of(res) == [
        (2, None, "malformed_json"),
        (3, None, "blank_line"),
        (4, "user_id", "wrong_type"),
        (5, None, "non_utf8"),
        (6, "timestamp", "wrong_type"),
        (7, "timestamp", "missing_field"),
        (8, "tags", "wrong_type"),
        (9, "details", "wrong_type"),
        (10, None, "malformed_json"),
        (11, None, "blank_line"),
        (12, "rating", "wrong_type"),
    ]
    assert res.frame["line"].to_list() == [1, 13]
    assert res.frame["user_id"].to_list() == ["U1", "U13"]
    assert res.lines_read == 13
    check_identity(res)


def test_nested_wrong_type_detected_behind_polars_stringification(tmp_path):
    # polars would silently turn 5 into "5" under a string schema: the re-check catches it
    res = read_jsonl(
        write(tmp_path / "r.jsonl", [rec(1), rec(2, details={"Brand": 5})]),
        SPECS,
        expected="reviews",
    )
    assert rejects_of(res) == [(2, "details.Brand", "wrong_type")]
    check_identity(res)


def test_slow_and_fast_paths_give_the_same_frame(tmp_path):
    good = [rec(i, store="" if i % 2 else "S", tags=None if i == 3 else ["t"]) for i in range(1, 6)]
    fast = read_jsonl(write(tmp_path / "a.jsonl", good), SPECS, expected="x")
    slow = read_jsonl(write(tmp_path / "b.jsonl", [*good, b"{bad"]), SPECS, expected="x")
    assert fast.fast_path and not slow.fast_path
    assert slow.frame.equals(fast.frame)


def test_gzip_with_bad_lines_and_missing_trailing_newline(tmp_path):
    data = json.dumps(rec(1)).encode() + b"\n" + b"nope\n" + json.dumps(rec(3)).encode()
    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(data))
    res = read_jsonl(path, SPECS, expected="reviews")
    assert rejects_of(res) == [(2, None, "malformed_json")]
    assert res.frame["line"].to_list() == [1, 3] and res.lines_read == 3


def test_bom_and_crlf_are_tolerated(tmp_path):
    data = (
        b"\xef\xbb\xbf"
        + json.dumps(rec(1)).encode()
        + b"\r\n"
        + json.dumps(rec(2)).encode()
        + b"\r\n"
    )
    (tmp_path / "r.jsonl").write_bytes(data)
    res = read_jsonl(tmp_path / "r.jsonl", SPECS, expected="reviews")
    assert res.rejects.height == 0 and res.frame["user_id"].to_list() == ["U1", "U2"]


def test_scalar_ok_accepts_a_bare_string(tmp_path):
    specs = [FieldSpec("id", required=True), FieldSpec("desc", pl.List(pl.Utf8), scalar_ok=True)]
    res = read_jsonl(
        write(tmp_path / "m.json", [{"id": "a", "desc": ["x"]}, {"id": "b", "desc": "y"}]),
        specs,
        expected="meta",
    )
    assert res.frame["desc"].to_list() == [["x"], ["y"]] and res.rejects.height == 0


def test_missing_file_names_path_and_expectation(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Amazon reviews file not found: .*nope\.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl", SPECS, expected="Amazon reviews")


@pytest.mark.parametrize("content", [b"a,b,c\n1,2,3\n4,5,6\n", b""])
def test_file_without_any_good_line_is_an_error(tmp_path, content):
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(ValueError, match=r"x\.csv: no line could be read as Amazon reviews"):
        read_jsonl(tmp_path / "x.csv", SPECS, expected="Amazon reviews")


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"name": "a", "dtype": pl.Date}, "unsupported dtype"),
        ({"name": "a", "path": ("x", "y", "z")}, "path must be 1 or 2"),
        ({"name": "a", "scalar_ok": True}, "scalar_ok needs"),
        ({"name": "a", "fallback": "a"}, "fallback cannot be the field itself"),
    ],
)
def test_fieldspec_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        FieldSpec(**kwargs)


def test_spec_list_validation(tmp_path):
    path = write(tmp_path / "r.jsonl", [rec(1)])
    with pytest.raises(ValueError, match="must name an earlier spec"):
        read_jsonl(path, [FieldSpec("a", fallback="b"), FieldSpec("b")], expected="x")
    with pytest.raises(ValueError, match="both as a value and as an object"):
        read_jsonl(
            path, [FieldSpec("a", path=("d",)), FieldSpec("b", path=("d", "x"))], expected="x"
        )


def test_nan_and_infinity_are_rejected_not_kept(tmp_path):
    lines = [rec(1), b'{"user_id": "U2", "parent_asin": "P2", "timestamp": 2, "rating": NaN}',
             b'{"user_id": "U3", "parent_asin": "P3", "timestamp": 3, "rating": -Infinity}',
             rec(4)]
    res = read_jsonl(write(tmp_path / "r.jsonl", lines), SPECS, expected="reviews")
    assert rejects_of(res) == [(2, None, "malformed_json"), (3, None, "malformed_json")]
    details = res.rejects["detail"].to_list()
    assert "NaN is not a JSON value" in details[0] and "-Infinity is not a JSON value" in details[1]
    assert res.frame["rating"].is_finite().all() and res.frame["line"].to_list() == [1, 4]
    check_identity(res)


def test_malformed_json_at_the_end_of_a_line_names_its_own_column(tmp_path):
    bad = b'{"user_id": "U2", "parent_asin": "P2"'  # 37 characters, the object never closed
    res = read_jsonl(write(tmp_path / "r.jsonl", [rec(1), bad]), SPECS, expected="reviews")
    assert rejects_of(res) == [(2, None, "malformed_json")]
    assert "column 38" in res.rejects["detail"][0]  # just past the last character, not the newline


def test_a_truncated_gzip_file_is_an_error_naming_the_file(tmp_path):
    from sapo_pipeline.config_utils import InputError

    whole = gzip.compress(b"".join(json.dumps(rec(i)).encode() + b"\n" for i in range(200)))
    path = tmp_path / "Cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"Cut\.jsonl\.gz: not a complete gzip file"):
        read_jsonl(path, SPECS, expected="reviews")
