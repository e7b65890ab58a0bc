"""UniSRec / RecBole atomic-file reader: sequence stitching, text split, rejects."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers import read_unisrec
from sapo_pipeline.data.readers._unisrec_text import detect_root, parse_text

NAME = "Sci"
ASINS = [f"B00000000{i}" for i in range(6)]
TEXTS = [
    "Red Pen. Office Products Writing Pens. Bic. ",
    "Mr. Sketch Marker. Office Products Writing Markers. Mr. Sketch. ",
    "Tape 3 in. x 10 yd. Office Products Tape. 3M. ",
    "Stapler. . Swingline. ",
    "Paper. Office Products Paper. . ",
    "Weird text without separators",
]
SEQS = {0: [0, 1, 2, 3, 4, 5], 1: [2, 0, 5, 1, 3]}
CAP = 3  # history cap: the long user's last rows are truncated


def inter_rows(seq: list[int], cap: int) -> dict[str, list[tuple[list[int], int]]]:
    rows = [(seq[max(0, p - cap) : p], seq[p]) for p in range(1, len(seq))]
    return {"train": rows[:-2][::-1], "valid": [rows[-2]], "test": [rows[-1]]}


def make(root: Path, extra: dict[str, list[str]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{NAME}.item2index").write_text("".join(f"{a}\t{i}\n" for i, a in enumerate(ASINS)))
    (root / f"{NAME}.user2index").write_text("R0\t0\nR1\t1\n")
    (root / f"{NAME}.text").write_text(
        "item_id:token\ttext:token_seq\n"
        + "".join(f"{a}\t{t}\n" for a, t in zip(ASINS, TEXTS, strict=True))
    )
    per_split: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for user, seq in SEQS.items():
        for split, rows in inter_rows(seq, CAP).items():
            per_split[split] += [f"{user}\t{' '.join(map(str, h))}\t{t}" for h, t in rows]
    for split, lines in per_split.items():
        lines = lines + (extra or {}).get(split, [])
        (root / f"{NAME}.{split}.inter").write_text(
            "user_id:token\titem_id_list:token_seq\titem_id:token\n" + "\n".join(lines) + "\n"
        )
    return root


def test_sequences_are_stitched_from_all_rows(tmp_path):
    src = read_unisrec(make(tmp_path), name=NAME)
    assert not src.has_timestamps and src.rejects.height == 0
    got = {u: g.sort("seq")["asin"].to_list() for (u,), g in src.reviews.group_by("user_id")}
    assert got == {"R0": [ASINS[i] for i in SEQS[0]], "R1": [ASINS[i] for i in SEQS[1]]}
    assert src.reviews["timestamp"].null_count() == src.reviews.height
    r0 = src.reviews.filter(pl.col("user_id") == "R0").sort("seq")
    # the first items come from the shortest-history row (train, last line of R0's block),
    # the last from the test row
    assert r0["file"].to_list()[0] == f"{NAME}.train.inter" and r0["line"].to_list()[0] == 4
    assert (r0["file"].to_list()[-1], r0["line"].to_list()[-1]) == (f"{NAME}.test.inter", 2)
    assert src.lines_read == {
        f"{NAME}.item2index": 6,
        f"{NAME}.user2index": 2,
        f"{NAME}.text": 6,
        f"{NAME}.train.inter": 5,
        f"{NAME}.valid.inter": 2,
        f"{NAME}.test.inter": 2,
    }
    assert f"history cap {CAP}" in src.notes[0]


def test_text_is_split_into_title_categories_brand(tmp_path):
    src = read_unisrec(make(tmp_path), name=NAME)
    items = {r["asin"]: r for r in src.items.iter_rows(named=True)}
    view = [(items[a]["title"], items[a]["categories"], items[a]["brand"]) for a in ASINS[:5]]
    assert view == [
        ("Red Pen", ["Office Products Writing Pens"], "Bic"),
        ("Mr. Sketch Marker", ["Office Products Writing Markers"], "Mr. Sketch"),
        ("Tape 3 in. x 10 yd", ["Office Products Tape"], "3M"),
        ("Stapler", [], "Swingline"),
        ("Paper", ["Office Products Paper"], None),
    ]
    assert all(items[a]["description"] is None for a in ASINS[:5])
    unsure = items[ASINS[5]]
    assert unsure["description"] == TEXTS[5] and unsure["categories"] == []
    assert items[ASINS[3]]["source_item_id"] == 3
    assert any("1 texts not split with confidence" in n for n in src.notes)


def test_detect_root_and_parse_without_root():
    assert detect_root(TEXTS) == "Office Products"
    fields, sure = parse_text("A. B C. D. ", None)
    assert sure and (fields["title"], fields["categories"], fields["brand"]) == ("A", ["B C"], "D")


def test_bad_inter_rows_are_rejected(tmp_path):
    extra = {"train": ["7\t0 1\t2", "0\t0 99\t1", "x\t0\t1", "0\t1 2", "0\t4 5\t0"]}
    src = read_unisrec(make(tmp_path, extra), name=NAME)
    train = f"{NAME}.train.inter"
    assert [
        (r["file"], r["line"], r["field"], r["reason"]) for r in src.rejects.iter_rows(named=True)
    ] == [
        (train, 7, "user_id", "unknown_user"),
        (train, 8, "item_id_list", "unknown_item"),
        (train, 9, None, "wrong_type"),
        (train, 10, None, "malformed_row"),
        (train, 11, None, "inconsistent_sequence"),
    ]
    # the good rows still give the full sequences
    assert src.reviews.filter(pl.col("user_id") == "R0").height == len(SEQS[0])
    assert src.lines_read[train] == 10


def test_missing_and_wrong_format_files(tmp_path):
    root = make(tmp_path / "d")
    (root / f"{NAME}.valid.inter").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"UniSRec valid.inter file not found: .*Sci\.valid\.inter"
    ):
        read_unisrec(root, name=NAME)
    (root / f"{NAME}.valid.inter").write_text('{"user": 1}\n{"user": 2}\n')
    with pytest.raises(ValueError, match=r"Sci\.valid\.inter: header .*expected RecBole \.inter"):
        read_unisrec(root, name=NAME)
    with pytest.raises(FileNotFoundError, match="directory"):
        read_unisrec(tmp_path / "absent", name=NAME)
