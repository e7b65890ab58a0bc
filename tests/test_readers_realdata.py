"""Readers on the real public data in ../shared/data (skipped when it is absent).

Expected counts come from PROVENANCE.md / PROVENANCE-extra.md.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sapo_pipeline.data.readers import read_source

pytestmark = pytest.mark.realdata

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def need(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    return path


def split_counts(src) -> dict[str, int]:
    return dict(src.published_samples.group_by("split").len().iter_rows())


def check_identity(src) -> None:
    """Per split file: rows read = published rows + rejects (one split file per split)."""
    per_split = split_counts(src)
    rejected = dict(src.rejects.group_by("file").len().iter_rows())
    for label, n in src.lines_read.items():
        if label.endswith(".csv") and label.startswith("minionerec/"):
            split = label.split("/")[-2]
            assert n == per_split.get(split, 0) + rejected.get(label, 0), label


@pytest.mark.parametrize(
    "cat, n_items, n_valid, n_test, n_asins, n_users",
    [
        ("Office_Products", 3459, 4866, 4866, 3317, 3231),
        ("Industrial_and_Scientific", 3686, 4532, 4533, 3541, 3285),
    ],
)
def test_minionerec_with_d3_timestamps(cat, n_items, n_valid, n_test, n_asins, n_users):
    root = need(f"amazon/{cat}")
    src = read_source(
        "minionerec", split_dir=root / "minionerec", timestamps_dir=root / "d3_rere", category=cat
    )
    assert src.rejects.height == 0 and src.has_timestamps
    assert src.items.height == n_items and src.items["title"].null_count() == 0
    assert split_counts(src) == {"valid": n_valid, "test": n_test}
    assert src.published_samples["timestamp"].null_count() == 0
    assert src.items.filter(pl.col("asin").str.len_chars() == 10).height == n_asins
    assert src.reviews["user_id"].n_unique() == n_users
    assert src.reviews["timestamp"].null_count() == 0
    # the histories used for train reconstruction precede their valid/test rows
    assert src.reviews["timestamp"].max() <= src.published_samples["timestamp"].max()
    check_identity(src)


def test_d3_copy_read_directly_has_the_same_targets_times():
    root = need("amazon/Office_Products")
    d3 = read_source("minionerec", split_dir=root / "d3_rere")
    assert split_counts(d3) == {"valid": 4866, "test": 4866}
    assert d3.items.height == 3459 and d3.has_timestamps
    mini = read_source("minionerec", split_dir=root / "minionerec")
    assert not mini.has_timestamps
    assert d3.published_samples["timestamp"].is_sorted()  # published chronologically
    assert (
        mini.published_samples["history"].list.len().to_list()
        == d3.published_samples["history"].list.len().to_list()
    )


def test_unisrec_scientific():
    src = read_source("unisrec", dir=need("unisrec_cowpirec/Scientific"), name="Scientific")
    assert src.rejects.height == 0 and not src.has_timestamps
    assert src.reviews["user_id"].n_unique() == 8442
    assert src.items.height == 4385 and src.reviews["asin"].n_unique() == 4385
    assert src.reviews.height == 59427
    lengths = src.reviews.group_by("user_id").len()["len"]
    assert (lengths.min(), lengths.max()) == (5, 80)
    assert src.items["title"].null_count() == 0
    assert not any("not split with confidence" in n for n in src.notes)


def test_lcrec_games_with_titles():
    root = need("lcrec_release/Games")
    titles = need("derived/Games/llmrank_item_to_lcrec_item.tsv")
    src = read_source("lcrec", dir=root, name="Games", titles_tsv=titles)
    assert src.rejects.height == 0 and not src.has_timestamps
    assert src.reviews["user_id"].n_unique() == 50546
    assert src.items.height == 16859 and src.items["title"].null_count() == 0
    assert src.reviews.height == 452989
    assert any("14 ambiguous_pair rows (7 pairs)" in n for n in src.notes)


@pytest.mark.parametrize(("env", "rel", "n_users", "n_items"), [
    ("office", "amazon/Office_Products", 3231, 3459),
    ("industrial", "amazon/Industrial_and_Scientific", 3285, 3686),
    ("scientific", "unisrec_cowpirec/Scientific", 8442, 4385),
])
def test_each_env_s_source_section_finds_its_files_through_the_reader_registry(
        env, rel, n_users, n_items):
    """What `kedro run --env <env> --params ingest.source.path=...` reads: the env's own source
    section, its paths resolved by the reader's registration (open_source)."""
    import yaml

    from sapo_pipeline.data.config import SourceConfig
    from sapo_pipeline.data.sources import open_source

    conf = Path(__file__).resolve().parents[1] / "conf" / env / "parameters_ingest.yml"
    section = yaml.safe_load(conf.read_text())["ingest"]["source"]
    src = open_source(SourceConfig(**{**section, "path": str(need(rel))}))
    assert src.rejects.height == 0
    assert src.reviews["user_id"].n_unique() == n_users and src.items.height == n_items
