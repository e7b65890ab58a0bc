"""MiniOneRec / D3 split-CSV reader on tiny hand-made releases."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers import read_minionerec
from sapo_pipeline.data.schema import SAMPLE_SCHEMA

CAT = "Office_Products"
TITLES = ["Pen", "Paper's pad", "Clip", "Tape", "Glue"]
ASINS = ["B000000000", "B000000001", "B000000002", "B000000003", "B000000004"]
MINI_COLS = [
    "user_id",
    "history_item_title",
    "item_title",
    "history_item_id",
    "item_id",
    "history_item_sid",
    "item_sid",
]
D3_COLS = [
    "user_id",
    "item_asins",
    "item_asin",
    "history_item_id",
    "item_id",
    "history_item_title",
    "item_title",
    "history_rating",
    "rating",
    "history_timestamp",
    "timestamp",
]
D3_OFFSET = 10  # D3 item ids differ from MiniOneRec's

# (user, history ids, target id, history timestamps, target timestamp)
VALID = [("A1", [0, 1], 2, [100, 200], 300), ("A2", [1, 3], 0, [150, 250], 300)]
TEST = [
    ("A1", [0, 1, 2], 3, [100, 200, 300], 400),
    ("A2", [1, 3, 0], 4, [150, 250, 300], 410),
    ("A3", [4], 2, [50], 420),
]


def mini_row(user, hist, target, *_):
    return [
        user,
        str([TITLES[i] for i in hist]),
        TITLES[target],
        str(hist),
        str(target),
        str([f"<a_{i}><b_{i}><c_{i}>" for i in hist]),
        f"<a_{target}><b_{target}><c_{target}>",
    ]


def d3_row(user, hist, target, hts, ts):
    return [
        f"RAW{user}",
        str([ASINS[i] for i in hist]),
        ASINS[target],
        str([i + D3_OFFSET for i in hist]),
        str(target + D3_OFFSET),
        str([TITLES[i] for i in hist]),
        TITLES[target],
        str([5.0] * len(hist)),
        "4.0",
        str(hts),
        str(ts),
    ]


def write_csv(path: Path, header: list[str], rows: list[list[str]], raw_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
        for line in raw_lines:
            fh.write(line + "\n")
    return path


def make_release(root: Path) -> tuple[Path, Path]:
    mini, d3 = root / "minionerec", root / "d3_rere"
    for split, rows in (("valid", VALID), ("test", TEST)):
        write_csv(
            mini / split / f"{CAT}_5_2016-10-2018-11.csv", MINI_COLS, [mini_row(*r) for r in rows]
        )
        write_csv(d3 / split / f"{CAT}_5_2016-10-2018-11.csv", D3_COLS, [d3_row(*r) for r in rows])
    (mini / "index").mkdir()
    items = {
        str(i): {
            "title": t,
            "description": str([f"About {t}", ""]),
            "brand": "Acme",
            "categories": "",
        }
        for i, t in enumerate(TITLES)
    }
    items["1"]["description"] = "['It's broken', 'second']"  # str(list) without escaping
    items["4"]["description"] = ""
    (mini / "index" / f"{CAT}.item.json").write_text(json.dumps(items))
    (mini / "info").mkdir()
    (mini / "info" / f"{CAT}_5_2016-10-2018-11.txt").write_text(
        "".join(f"<a_{i}><b_{i}><c_{i}>\t{t}\t{i}\n" for i, t in enumerate(TITLES))
    )
    (d3 / "info").mkdir()
    (d3 / "info" / f"{CAT}_5_2016-10-2018-11.txt").write_text(
        "".join(f"{t}\t{i + D3_OFFSET}\n" for i, t in enumerate(TITLES))
    )
    return mini, d3


def label(split: str, tag: str = "minionerec") -> str:
    return f"{tag}/{split}/{CAT}_5_2016-10-2018-11.csv"


def rejects_of(src) -> list[tuple]:
    return [
        (r["file"], r["line"], r["field"], r["reason"]) for r in src.rejects.iter_rows(named=True)
    ]


def test_minionerec_without_timestamps(tmp_path):
    mini, _ = make_release(tmp_path)
    src = read_minionerec(mini)
    assert not src.has_timestamps and src.rejects.height == 0
    ps = src.published_samples
    assert ps.schema == pl.Schema(SAMPLE_SCHEMA)
    assert ps.select("user_id", "history", "target", "split").rows() == [
        (u, h, t, s) for s, rows in (("valid", VALID), ("test", TEST)) for u, h, t, *_ in rows
    ]
    assert ps["timestamp"].null_count() == ps.height and ps["sample_id"].to_list() == list(range(5))
    # reviews: the history of each user's earliest published row (file order without timestamps)
    assert src.reviews.select("user_id", "asin", "seq", "file", "line").rows() == [
        ("A1", "0", 0, label("valid"), 2),
        ("A1", "1", 1, label("valid"), 2),
        ("A2", "1", 0, label("valid"), 3),
        ("A2", "3", 1, label("valid"), 3),
        ("A3", "4", 0, label("test"), 4),
    ]
    items = src.items.sort("source_item_id")
    assert items["asin"].to_list() == ["0", "1", "2", "3", "4"]
    assert items["title"].to_list() == TITLES
    assert items["description"].to_list() == [
        "About Pen",
        "It's broken second",
        "About Clip",
        "About Tape",
        None,
    ]
    assert any("1 descriptions are not valid list literals" in n for n in src.notes)
    assert any("train split not published" in n for n in src.notes)
    assert src.lines_read == {
        label("valid"): 2,
        label("test"): 3,
        f"minionerec/index/{CAT}.item.json": 5,
    }


def test_minionerec_with_row_aligned_d3_timestamps(tmp_path):
    mini, d3 = make_release(tmp_path)
    src = read_minionerec(mini, timestamps_dir=d3, category=CAT)
    assert src.has_timestamps
    ps = src.published_samples
    assert ps["timestamp"].to_list() == [300, 300, 400, 410, 420]
    assert ps["user_id"].to_list()[:2] == ["A1", "A2"]  # user ids as given, not the D3 raw ids
    assert ps["history"].to_list()[0] == [0, 1]  # MiniOneRec ids, not D3 ids
    assert src.reviews.select("user_id", "asin", "timestamp", "rating", "seq").rows() == [
        ("A1", ASINS[0], 100, 5.0, 0),
        ("A1", ASINS[1], 200, 5.0, 1),
        ("A2", ASINS[1], 150, 5.0, 0),
        ("A2", ASINS[3], 250, 5.0, 1),
        ("A3", ASINS[4], 50, 5.0, 0),
    ]
    assert src.items.sort("source_item_id")["asin"].to_list() == ASINS
    assert set(src.lines_read) == {
        label("valid"),
        label("test"),
        label("valid", "d3_rere"),
        label("test", "d3_rere"),
        f"minionerec/index/{CAT}.item.json",
    }


def test_d3_files_read_directly(tmp_path):
    _, d3 = make_release(tmp_path)
    src = read_minionerec(d3)
    assert src.has_timestamps
    assert src.items.sort("source_item_id").select("asin", "source_item_id", "title").rows() == [
        (a, i + D3_OFFSET, t) for i, (a, t) in enumerate(zip(ASINS, TITLES, strict=True))
    ]
    assert src.published_samples["user_id"].to_list()[0] == "RAWA1"
    assert src.published_samples["target"].to_list()[0] == 2 + D3_OFFSET


def test_earliest_row_is_chosen_by_target_timestamp(tmp_path):
    mini, d3 = make_release(tmp_path)
    # A3 gets a later valid row: with timestamps its earliest row is still the test row (420)
    extra = ("A3", [0], 1, [10], 500)
    write_csv(
        mini / "valid" / f"{CAT}_5_2016-10-2018-11.csv",
        MINI_COLS,
        [mini_row(*r) for r in (extra, *VALID)],
    )
    write_csv(
        d3 / "valid" / f"{CAT}_5_2016-10-2018-11.csv",
        D3_COLS,
        [d3_row(*r) for r in (extra, *VALID)],
    )
    with_ts = read_minionerec(mini, timestamps_dir=d3)
    assert with_ts.reviews.filter(pl.col("user_id") == "A3")["asin"].to_list() == [ASINS[4]]
    no_ts = read_minionerec(mini)
    assert no_ts.reviews.filter(pl.col("user_id") == "A3")["asin"].to_list() == ["0"]


def test_bad_rows_are_quarantined_with_file_line_field(tmp_path):
    mini, _ = make_release(tmp_path)
    rows = [mini_row(*r) for r in VALID]
    bad_list = mini_row(*VALID[0])
    bad_list[3] = "[0, 1"
    bad_target = mini_row(*VALID[0])
    bad_target[4] = "two"
    unknown = mini_row(*VALID[0])
    unknown[3] = "[0, 99]"
    wrong_elem = mini_row(*VALID[0])
    wrong_elem[3] = "['a', 1]"
    write_csv(
        mini / "valid" / f"{CAT}_5_2016-10-2018-11.csv",
        MINI_COLS,
        [rows[0], bad_list, bad_target, unknown, wrong_elem, rows[1]],
        raw_lines=["only,three,fields", ""],
    )
    src = read_minionerec(mini)
    assert rejects_of(src) == [
        (label("valid"), 3, "history_item_id", "malformed_list"),
        (label("valid"), 4, "item_id", "wrong_type"),
        (label("valid"), 5, "history_item_id", "unknown_item"),
        (label("valid"), 6, "history_item_id", "wrong_type"),
        (label("valid"), 8, None, "malformed_row"),
        (label("valid"), 9, None, "blank_line"),
    ]
    n_valid = src.published_samples.filter(pl.col("split") == "valid").height
    assert n_valid == 2
    assert (
        src.lines_read[label("valid")]
        == n_valid + src.rejects.filter(pl.col("file") == label("valid")).height
        == 8
    )


def test_misaligned_companion_is_an_error(tmp_path):
    mini, d3 = make_release(tmp_path)
    write_csv(
        d3 / "test" / f"{CAT}_5_2016-10-2018-11.csv",
        D3_COLS,
        [d3_row(*r) for r in (TEST[1], TEST[0], TEST[2])],
    )
    with pytest.raises(ValueError, match=r"line 2 .*line 2: history_item_title differ"):
        read_minionerec(mini, timestamps_dir=d3)
    write_csv(d3 / "test" / f"{CAT}_5_2016-10-2018-11.csv", D3_COLS, [d3_row(*TEST[0])])
    with pytest.raises(ValueError, match="has 3 rows but .* has 1"):
        read_minionerec(mini, timestamps_dir=d3)


def test_info_txt_is_used_without_item_json(tmp_path):
    mini, _ = make_release(tmp_path)
    shutil.rmtree(mini / "index")
    with (mini / "info" / f"{CAT}_5_2016-10-2018-11.txt").open("a") as fh:
        fh.write("<a_9><b_9><c_9>\tNo id here\tx\n")
    src = read_minionerec(mini)
    assert src.items.sort("source_item_id")["title"].to_list() == TITLES
    assert rejects_of(src) == [
        (f"minionerec/info/{CAT}_5_2016-10-2018-11.txt", 6, "item_id", "wrong_type")
    ]


def test_missing_and_wrong_format_inputs(tmp_path):
    mini, _ = make_release(tmp_path)
    with pytest.raises(FileNotFoundError, match="split directory"):
        read_minionerec(tmp_path / "absent")
    shutil.rmtree(mini / "test")
    with pytest.raises(FileNotFoundError, match=r"no test split CSV found: expected .*test"):
        read_minionerec(mini)
    (mini / "test").mkdir()
    (mini / "test" / f"{CAT}_5.csv").write_text('{"user_id": "A1", "item_id": 3}\n')
    with pytest.raises(ValueError, match=r"lacks .*expected a MiniOneRec/D3 split CSV"):
        read_minionerec(mini)
