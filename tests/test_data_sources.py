"""Where the raw files are: ``ingest.source.path`` must be a folder, and the errors say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from sapo_pipeline.data.config import SourceConfig
from sapo_pipeline.data.sources import inventory, open_source, raw_root


def test_a_file_given_as_the_raw_folder_is_called_a_file(tmp_path: Path):
    raw = tmp_path / "Office_Products.jsonl"
    raw.write_text("{}\n")
    with pytest.raises(NotADirectoryError, match=r"is a file; a folder holding the raw files is "
                                                 r"expected \(the folder of Office_Products.jsonl"):
        raw_root(raw)
    with pytest.raises(NotADirectoryError, match="is a file"):
        open_source(SourceConfig(format="amazon2023", path=str(raw), category="Office_Products"))
    with pytest.raises(NotADirectoryError, match="is a file"):
        inventory(raw)


def test_a_missing_raw_folder_says_it_does_not_exist(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist \(ingest.source.path\)"):
        raw_root(tmp_path / "nowhere")
    assert raw_root(tmp_path) == tmp_path


def test_the_category_guess_matches_only_its_release_s_file_names(tmp_path: Path):
    """meta_*.json must not match Amazon 2023's meta_*.jsonl (it named 'X..json' before)."""
    for name in ("Office_Products.jsonl", "meta_Office_Products.jsonl"):
        (tmp_path / name).write_text("{}\n")
    with pytest.raises(ValueError, match=r"found \[\]; the folder holds amazon2023 files "
                                         r"\(meta_Office_Products.jsonl\): set "
                                         r"ingest.source.format: amazon2023"):
        open_source(SourceConfig(format="amazon2018", path=str(tmp_path)))
    (tmp_path / "meta_Tools.json.gz").write_bytes(b"")
    from sapo_pipeline.data.readers._amazon import _detect_category

    assert _detect_category(tmp_path, "amazon2018") == "Tools"
    assert _detect_category(tmp_path, "amazon2023") == "Office_Products"
