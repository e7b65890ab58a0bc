"""The published MiniOneRec SID index as the catalog: read, mapped, collisions kept and handled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

from sapo_pipeline.config_utils import InputError
from sapo_pipeline.sid.build import catalog_report
from sapo_pipeline.sid.catalog import SIDTrie
from sapo_pipeline.sid.config import SIDCatalogConfig
from sapo_pipeline.sid.published import published_sid_table, read_published_index

INDEX = {"10": ["<a_1>", "<b_2>", "<c_3>"], "11": ["<a_1>", "<b_2>", "<c_3>"],
         "12": ["<a_0>", "<b_0>", "<c_1>"], "13": ["<a_2>", "<b_0>", "<c_1>"]}
ITEMS = pl.DataFrame({"item_id": [0, 1, 2], "source_item_id": [10, 11, 12]})


def _index(tmp_path: Path, data) -> Path:
    path = tmp_path / "X.index.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_every_item_gets_the_published_codes_and_shared_sids_are_kept(tmp_path):
    path = _index(tmp_path, INDEX)
    table, res = published_sid_table(ITEMS, path, 3, 8)
    assert table["codes"].to_list() == [[1, 2, 3], [1, 2, 3], [0, 0, 1]]
    assert table["shared_sid"].to_list() == [True, True, False]
    assert (res["shared_sids"], res["items_sharing_a_sid"]) == (1, 2)
    assert res["unused_index_entries"] == 1  # item 13 is not in this catalog
    cfg = SIDCatalogConfig(quantizer="published", published_index=str(path), codebook_size=8)
    report = catalog_report(table, res, None, [], cfg)  # no "items still share a SID" error
    assert report["unique_sids"] == 2 and report["items"] == 3


def test_the_trie_maps_a_shared_sid_to_its_lowest_item(tmp_path):
    table, _ = published_sid_table(ITEMS, _index(tmp_path, INDEX), 3, 8)
    trie = SIDTrie.from_table(table)
    assert len(trie) == 2 and trie.item_of((1, 2, 3)) == 0
    assert SIDTrie.from_dict(trie.to_dict()).item_of("<a_1><b_2><c_3>") == 0
    with pytest.raises(ValueError, match="shared by items 0 and 1"):  # ours stay strict
        SIDTrie.from_table(table.drop("shared_sid"))


@pytest.mark.parametrize("data, match", [
    ("{not json", "line 1, column 2: not JSON"),
    ({"10": ["<a_1>", "<c_2>"]}, "item '10'.*letter 'b'"),
    ({"10": "<a_1><b_2>"}, "item '10'.*list of SID tokens"),
    ({"10": ["<a_1>", "<b_2>"], "11": ["<a_1>"]}, "different lengths"),
    ({"x": ["<a_1>"]}, "item 'x'"),
])
def test_malformed_index_names_file_and_item(tmp_path, data, match):
    with pytest.raises(InputError, match=match) as err:
        read_published_index(_index(tmp_path, data))
    assert "X.index.json" in str(err.value)


def test_missing_items_levels_and_codes_are_errors(tmp_path):
    path = _index(tmp_path, INDEX)
    with pytest.raises(InputError, match=r"1 catalog items have no SID.*\[99\]"):
        published_sid_table(ITEMS.with_columns(source_item_id=pl.Series([10, 11, 99])), path, 3, 8)
    with pytest.raises(InputError, match="3 levels, sid_catalog.levels is 4"):
        published_sid_table(ITEMS, path, 4, 8)
    with pytest.raises(InputError, match="code 3 >= sid_catalog.codebook_size 3"):
        published_sid_table(ITEMS, path, 3, 3)
    with pytest.raises(InputError, match="a folder"):
        read_published_index(tmp_path)
    with pytest.raises(ValueError, match="published_index"):
        SIDCatalogConfig(quantizer="published")
    with pytest.raises(ValueError, match="published_index"):
        SIDCatalogConfig(published_index=str(path))


@pytest.mark.realdata
@pytest.mark.parametrize("cat, items, sids", [("Office_Products", 3459, 3444),
                                              ("Industrial_and_Scientific", 3686, 3670)])
def test_the_published_indexes_cover_their_catalogs(shared_data, cat, items, sids):
    from sapo_pipeline.data.readers import read_source

    root = shared_data / "amazon" / cat
    src = read_source("minionerec", split_dir=root / "minionerec", category=cat)
    catalog = src.items.with_columns(item_id=pl.int_range(pl.len()))
    table, res = published_sid_table(catalog, root / "minionerec" / "index" / f"{cat}.index.json",
                                     3, 256)
    assert table.height == items and table["sid"].n_unique() == sids
    assert res["items_sharing_a_sid"] == int(table["shared_sid"].sum()) > 0
    assert len(SIDTrie.from_table(table)) == sids


@pytest.mark.realdata
@pytest.mark.slow
def test_office_through_kedro_with_the_published_index(shared_data, tmp_path):
    """``--env office`` ingest + sid_catalog with ``quantizer=published``: the catalog's SIDs are
    the published ones, the trie serves them, the report states the collisions."""
    from kedro_helpers import kedro, make_project

    root = shared_data / "amazon" / "Office_Products"
    index = root / "minionerec" / "index" / "Office_Products.index.json"
    project = make_project(tmp_path / "p")
    kedro(project, "run", "--env", "office", "--pipelines=ingest,sid_catalog", "--params",
          f"ingest.source.path={root},sid_catalog.quantizer=published,"
          f"sid_catalog.published_index={index}")
    out = project / "data" / "office"
    items = pl.read_parquet(out / "03_primary" / "items.parquet")
    table = pl.read_parquet(out / "04_feature" / "sid_table.parquet")
    published = json.loads(index.read_text())
    sid_of = dict(zip(table["item_id"].to_list(), table["sid"].to_list(), strict=True))
    for item, source in items.select("item_id", "source_item_id").head(200).iter_rows():
        assert sid_of[item] == "".join(published[str(source)])
    report = json.loads((out / "08_reporting" / "sid_report.json").read_text())
    assert report["resolution"]["method"] == "published" and report["unique_sids"] < items.height
    trie = SIDTrie.from_dict(json.loads((out / "04_feature" / "sid_trie.json").read_text()))
    assert trie.allow_shared and len(trie) == report["unique_sids"]
    # code vectors for align.sid_init=codebook: the items' mean residuals per code
    state = load_file(str(out / "06_models" / "sid_quantizer.safetensors"))
    assert state["codebooks"].shape == (3, 256, 384)
    assert np.abs(state["codebooks"][0]).sum(axis=1).astype(bool).sum() == len(
        {c[0] for c in table["codes"].to_list()})  # a vector for exactly the codes items use


def test_items_of_another_catalog_are_refused_by_their_titles(tmp_path):
    path = _index(tmp_path, INDEX)
    (tmp_path / "X.item.json").write_text(json.dumps(
        {"10": {"title": "ten"}, "11": {"title": "eleven"}, "12": {"title": "twelve"}}))
    titled = ITEMS.with_columns(title=pl.Series(["ten", "eleven", "twelve"]))
    assert published_sid_table(titled, path, 3, 8)[0].height == 3
    with pytest.raises(InputError, match="1 of 3 items have another title.*item 12"):
        published_sid_table(titled.with_columns(title=pl.Series(["ten", "eleven", "x"])), path,
                            3, 8)
