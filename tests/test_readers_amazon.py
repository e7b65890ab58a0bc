"""Amazon 2023 / 2018 review + meta readers and the reader registry."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers import READERS, read_amazon2018, read_amazon2023, read_source
from sapo_pipeline.data.schema import ITEM_SCHEMA, REVIEW_SCHEMA


def write(path: Path, lines: list, gz: bool = False) -> Path:
    data = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def review23(i: int, **kw) -> dict:
    r = {
        "rating": 5.0,
        "title": "t",
        "text": "x",
        "images": [],
        "asin": f"A{i}",
        "parent_asin": f"P{i % 3}",
        "user_id": f"U{i % 2}",
        "timestamp": 1_600_000_000_999 + i,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    r.update(kw)
    return r


META23 = [
    {
        "parent_asin": "P0",
        "title": "Pen",
        "main_category": "Office",
        "categories": [],
        "features": ["f"],
        "description": ["Blue", "", "ink."],
        "store": "",
        "price": None,
        "details": {"Brand": "Bic", "Best Sellers Rank": {"Office": 3}},
    },
    {
        "parent_asin": "P1",
        "title": "  ",
        "main_category": "Office",
        "categories": ["Office", "Paper"],
        "description": [],
        "store": "Acme",
        "details": {},
    },
    {"title": "no key", "store": "X"},
    {"parent_asin": "P2", "title": "Clip", "categories": ["Office"], "store": None},
    {"parent_asin": "P0", "title": "Pen again", "store": "Bic"},
]


def per_file_identity(src, reviews_file: str, meta_file: str) -> None:
    rej = src.rejects.group_by("file").len()
    counts = dict(rej.iter_rows())
    assert src.lines_read[reviews_file] == (
        src.reviews.filter(pl.col("file") == reviews_file).height + counts.get(reviews_file, 0)
    )
    assert src.lines_read[meta_file] == src.items.height + counts.get(meta_file, 0)


@pytest.mark.parametrize("gz", [False, True])
def test_amazon2023_reads_and_converts(tmp_path, gz):
    reviews = write(tmp_path / "Office.jsonl", [review23(i) for i in range(4)], gz)
    meta = write(tmp_path / "meta_Office.jsonl", META23, gz)
    src = read_amazon2023(reviews, meta)
    assert src.reviews.schema == pl.Schema(REVIEW_SCHEMA) and src.items.schema == pl.Schema(
        ITEM_SCHEMA
    )
    r0 = src.reviews.row(0, named=True)
    assert r0 == {
        "user_id": "U0",
        "asin": "P0",
        "timestamp": 1_600_000_000,
        "rating": 5.0,
        "seq": 1,
        "file": "Office.jsonl",
        "line": 1,
    }
    items = {r["asin"]: r for r in src.items.iter_rows(named=True)}
    assert list(items) == ["P0", "P1", "P2"]
    assert items["P0"]["brand"] == "Bic"  # store empty -> details["Brand"]
    assert items["P0"]["description"] == "Blue ink."
    assert items["P0"]["categories"] == ["Office"]  # empty path -> [main_category]
    assert items["P1"]["title"] is None and items["P1"]["brand"] == "Acme"
    assert items["P1"]["categories"] == ["Office", "Paper"] and items["P1"]["description"] is None
    assert items["P2"]["brand"] is None and items["P0"]["source_item_id"] is None
    assert [
        (r["file"], r["line"], r["field"], r["reason"]) for r in src.rejects.iter_rows(named=True)
    ] == [
        ("meta_Office.jsonl", 3, "parent_asin", "missing_field"),
        ("meta_Office.jsonl", 5, "parent_asin", "duplicate_item"),
    ]
    assert "line 1" in src.rejects["detail"][1]
    assert src.lines_read == {"Office.jsonl": 4, "meta_Office.jsonl": 5}
    assert any("without a title" in n for n in src.notes)
    per_file_identity(src, "Office.jsonl", "meta_Office.jsonl")


def test_amazon2023_dirty_reviews(tmp_path):
    lines = [
        review23(0),
        b"{oops",
        review23(2, timestamp=1.5),
        b"",
        {k: v for k, v in review23(4).items() if k != "user_id"},
        b'{"user_id": "\xe9"}',
        review23(6),
    ]
    src = read_amazon2023(
        write(tmp_path / "r.jsonl", lines), write(tmp_path / "m.jsonl", META23[:2])
    )
    assert [
        (r["line"], r["field"], r["reason"])
        for r in src.rejects.filter(pl.col("file") == "r.jsonl").iter_rows(named=True)
    ] == [
        (2, None, "malformed_json"),
        (3, "timestamp", "wrong_type"),
        (4, None, "blank_line"),
        (5, "user_id", "missing_field"),
        (6, None, "non_utf8"),
    ]
    assert src.reviews["line"].to_list() == [1, 7]
    per_file_identity(src, "r.jsonl", "m.jsonl")


def test_amazon2018_reads_renames_and_string_description(tmp_path):
    reviews = [
        {
            "overall": 4.0,
            "verified": True,
            "reviewTime": "09 1, 2016",
            "reviewerID": "R1",
            "asin": "X1",
            "unixReviewTime": 1472688000,
            "vote": "2",
            "style": {"Size:": " 1"},
        },
        {"overall": 5.0, "reviewerID": "R1", "asin": "X2", "unixReviewTime": 1472774400},
        {"overall": 5.0, "reviewerID": "R2", "asin": "X2"},
    ]
    meta = [
        {
            "asin": "X1",
            "title": "Stapler",
            "category": ["Office Products", "Staplers"],
            "description": ["Heavy", "duty"],
            "brand": "Swingline",
            "also_buy": ["X2"],
        },
        {"asin": "X2", "title": "Tape", "category": [], "description": "One string.", "brand": ""},
        {"asin": "X1", "title": "dup"},
    ]
    src = read_amazon2018(
        write(tmp_path / "Office.json", reviews, gz=True),
        write(tmp_path / "meta_Office.json", meta),
    )
    assert src.reviews.select("user_id", "asin", "timestamp", "rating").rows() == [
        ("R1", "X1", 1472688000, 4.0),
        ("R1", "X2", 1472774400, 5.0),
    ]
    items = {r["asin"]: r for r in src.items.iter_rows(named=True)}
    assert items["X1"]["categories"] == ["Office Products", "Staplers"]
    assert items["X1"]["description"] == "Heavy duty" and items["X1"]["brand"] == "Swingline"
    assert items["X2"]["description"] == "One string." and items["X2"]["brand"] is None
    assert [
        (r["file"], r["line"], r["field"], r["reason"]) for r in src.rejects.iter_rows(named=True)
    ] == [
        ("Office.json", 3, "unixReviewTime", "missing_field"),
        ("meta_Office.json", 3, "asin", "duplicate_item"),
    ]
    per_file_identity(src, "Office.json", "meta_Office.json")


def test_missing_and_wrong_format_files(tmp_path):
    meta = write(tmp_path / "m.jsonl", META23[:1])
    with pytest.raises(FileNotFoundError, match="Amazon 2023 review JSON lines file not found"):
        read_amazon2023(tmp_path / "absent.jsonl", meta)
    csv = tmp_path / "reviews.csv"
    csv.write_text("user_id,parent_asin,timestamp\nU1,P1,1\n")
    with pytest.raises(
        ValueError, match=r"reviews\.csv: no line could be read as Amazon 2023 review"
    ):
        read_amazon2023(csv, meta)


def test_same_file_name_in_two_dirs_is_kept_apart(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src = read_amazon2023(
        write(tmp_path / "a" / "x.jsonl", [review23(0)]),
        write(tmp_path / "b" / "x.jsonl", META23[:1]),
    )
    assert len(src.lines_read) == 2


def test_registry_dispatches_and_rejects_unknown_formats(tmp_path):
    assert set(READERS) == {"amazon2023", "amazon2018", "minionerec", "unisrec", "lcrec"}
    src = read_source(
        "amazon2023",
        reviews_path=write(tmp_path / "r.jsonl", [review23(0)]),
        meta_path=write(tmp_path / "m.jsonl", META23[:1]),
    )
    assert src.reviews.height == 1
    with pytest.raises(ValueError, match=r"unknown source format 'csv'.*'amazon2018'.*'unisrec'"):
        read_source("csv")
    with pytest.raises(TypeError, match="read_source\\('lcrec'\\).*signature"):
        read_source("lcrec", folder=tmp_path)


def test_implausible_timestamps_are_rejected_and_a_file_in_the_wrong_unit_is_an_error(tmp_path):
    from sapo_pipeline.config_utils import InputError

    meta = write(tmp_path / "meta.jsonl", META23)
    lines = [review23(1), review23(2, timestamp=-5), review23(3, timestamp=2_600_000_000_000),
             review23(4)]
    src = read_amazon2023(write(tmp_path / "r.jsonl", lines), meta)
    assert src.reviews["line"].to_list() == [1, 4]
    bad = src.rejects.filter(pl.col("reason") == "implausible_timestamp")
    assert bad["line"].to_list() == [2, 3] and set(bad["field"]) == {"timestamp"}
    assert "-5 milliseconds" in bad["detail"][0] and "= 2052-" in bad["detail"][1]
    # a whole file written in seconds: every review would land in January 1970
    in_seconds = [review23(i, timestamp=1_600_000_000 + i) for i in range(5)]
    with pytest.raises(InputError, match=r"r_s.jsonl: timestamps are in seconds, Amazon 2023 "
                                         r"files hold milliseconds \(median 1600000002 = 2020-09-13"):
        read_amazon2023(write(tmp_path / "r_s.jsonl", in_seconds), meta)
