"""LC-Rec reader: complete sequences, title map with ambiguous pairs, rejects."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers import read_lcrec

ASINS = ["G0", "G1", "G2", "G3", "G4"]
HEADER = "llmrank_item_id\tlcrec_item_id\tasin\tmatch\ttitle\n"


def make(root: Path, inter: dict | str, title_rows: list[str]) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Games.item2id").write_text("".join(f"{a}\t{i}\n" for i, a in enumerate(ASINS)))
    (root / "Games.user2id").write_text("RA\t0\nRB\t1\nRC\t2\nRD\t3\n")
    (root / "Games.inter.json").write_text(inter if isinstance(inter, str) else json.dumps(inter))
    titles = root / "map.tsv"
    titles.write_text(HEADER + "".join(r + "\n" for r in title_rows))
    return root, titles


TITLE_ROWS = [
    "0\t0\tG0\tunique\tZelda",
    "1\t3|4\tG3|G4\tambiguous_pair\tMario (cart)",
    "2\t3|4\tG3|G4\tambiguous_pair\tMario [Digital Code]",
    "3\t1\tG1\tunique\tTetris",
]


def test_sequences_items_and_ambiguous_titles(tmp_path):
    root, titles = make(tmp_path, {"0": [0, 1, 2], "1": [3, 4, 0]}, TITLE_ROWS)
    src = read_lcrec(root, titles_tsv=titles)
    assert not src.has_timestamps and src.rejects.height == 0
    assert src.reviews.select("user_id", "asin", "seq", "line").rows() == [
        ("RA", "G0", 0, 1),
        ("RA", "G1", 1, 1),
        ("RA", "G2", 2, 1),
        ("RB", "G3", 0, 2),
        ("RB", "G4", 1, 2),
        ("RB", "G0", 2, 2),
    ]
    assert src.items.select("asin", "title", "source_item_id").rows() == [
        ("G0", "Zelda", 0),
        ("G1", "Tetris", 1),
        ("G2", None, 2),
        ("G3", "Mario (cart)", 3),
        ("G4", "Mario [Digital Code]", 4),
    ]
    assert any("2 ambiguous_pair rows (1 pairs)" in n for n in src.notes)
    assert any("1 of 5 items have no title" in n for n in src.notes)
    assert src.lines_read == {
        "Games.item2id": 5,
        "Games.user2id": 4,
        "map.tsv": 4,
        "Games.inter.json": 2,
    }


def test_bad_records_and_map_rows_are_rejected(tmp_path):
    inter = {"0": [0, 1], "9": [1, 2], "1": [0, "x"], "2": [], "z": [1], "1b": [0], "3": [0, 42]}
    rows = [
        *TITLE_ROWS,
        "4\t2\tG9\tunique\tWrong asin",
        "5\t7\tG7\tunique\tUnknown",
        "6\tq\tG0\tunique\tBad",
    ]
    root, titles = make(tmp_path, inter, rows)
    src = read_lcrec(root, titles_tsv=titles)
    got = [
        (r["file"], r["line"], r["field"], r["reason"]) for r in src.rejects.iter_rows(named=True)
    ]
    assert got == [
        ("map.tsv", 6, "asin", "inconsistent_item"),
        ("map.tsv", 7, "lcrec_item_id", "unknown_item"),
        ("map.tsv", 8, "lcrec_item_id", "wrong_type"),
        ("Games.inter.json", 2, "user_id", "unknown_user"),
        ("Games.inter.json", 3, "items", "wrong_type"),
        ("Games.inter.json", 4, "items", "empty_sequence"),
        ("Games.inter.json", 5, "user_id", "wrong_type"),
        ("Games.inter.json", 6, "user_id", "wrong_type"),
        ("Games.inter.json", 7, "items", "unknown_item"),
    ]
    n_users = src.reviews["user_id"].n_unique()
    assert src.lines_read["Games.inter.json"] == n_users + 6 == 7
    assert src.reviews.filter(pl.col("user_id") == "RA")["asin"].to_list() == ["G0", "G1"]


def test_without_titles_every_title_is_null(tmp_path):
    root, _ = make(tmp_path, {"0": [0, 1]}, TITLE_ROWS)
    src = read_lcrec(root)
    assert src.items["title"].null_count() == 5
    assert any("no titles_tsv" in n for n in src.notes)


def test_missing_and_wrong_format_files(tmp_path):
    root, titles = make(tmp_path, "[1, 2, 3]", TITLE_ROWS)
    with pytest.raises(ValueError, match=r"Games\.inter\.json: expected a JSON object"):
        read_lcrec(root, titles_tsv=titles)
    (root / "Games.inter.json").write_text("user,items\n0,1\n")
    with pytest.raises(ValueError, match=r"cannot be read as LC-Rec inter\.json"):
        read_lcrec(root)
    (root / "Games.item2id").unlink()
    with pytest.raises(FileNotFoundError, match=r"LC-Rec item2id file not found: .*Games\.item2id"):
        read_lcrec(root)
    good, _ = make(tmp_path / "y", {"0": [0]}, TITLE_ROWS)
    with pytest.raises(FileNotFoundError, match=r"title map TSV not found: .*no\.tsv"):
        read_lcrec(good, titles_tsv=tmp_path / "no.tsv")
