"""Every output of every registered pipeline is a persisted catalog dataset with a layer."""

from __future__ import annotations

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

from kedro_helpers import REPO


@pytest.fixture(scope="module")
def catalog_and_pipelines():
    bootstrap_project(REPO)
    configure_project("sapo_pipeline")
    with KedroSession.create(project_path=REPO, env="base") as session:
        context = session.load_context()
        return context.catalog, dict(pipelines)


def test_every_node_output_is_persisted_with_a_layer(catalog_and_pipelines):
    catalog, registered = catalog_and_pipelines
    outputs = set().union(*(p.all_outputs() for p in registered.values()))
    missing, memory, unlayered = [], [], []
    for name in sorted(outputs):
        if name not in catalog:
            missing.append(name)
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, MemoryDataset):
            memory.append(name)
        layer = ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")
        if not layer:
            unlayered.append(name)
    assert not missing, f"outputs without a catalog entry: {missing}"
    assert not memory, f"outputs kept only in memory: {memory}"
    assert not unlayered, f"outputs without a kedro-viz layer: {unlayered}"


def test_every_node_is_named(catalog_and_pipelines):
    _, registered = catalog_and_pipelines
    for name, pipe in registered.items():
        for node in pipe.nodes:
            assert node._name, f"pipeline {name}: unnamed node {node}"


def test_raw_source_and_ledgers_round_trip_whole(tmp_path):
    import polars as pl

    from sapo_pipeline.data.accounting import Ledger
    from sapo_pipeline.data.schema import ITEM_SCHEMA, REJECT_SCHEMA, REVIEW_SCHEMA, RawSource
    from sapo_pipeline.datasets import LedgersDataset, RawSourceDataset

    reviews = pl.DataFrame({"user_id": ["u"], "asin": ["a"], "timestamp": [5], "rating": [4.0],
                            "seq": [1], "file": ["r.jsonl"], "line": [1]}, schema=REVIEW_SCHEMA)
    items = pl.DataFrame({"asin": ["a"], "title": ["A"], "brand": [None], "categories": [["c"]],
                          "description": [None], "source_item_id": [None]}, schema=ITEM_SCHEMA)
    rejects = pl.DataFrame([("r.jsonl", 2, None, "malformed_json", "x")], schema=REJECT_SCHEMA,
                           orient="row")
    raw = RawSource(reviews=reviews, items=items, rejects=rejects, lines_read={"r.jsonl": 2},
                    notes=["n"], line_files={"reviews": ["r.jsonl"], "items": ["m.jsonl"]})
    ds = RawSourceDataset(filepath=str(tmp_path / "raw_source"))
    assert not ds.exists()
    ds.save(raw)
    back = ds.load()
    assert back.reviews.equals(raw.reviews) and back.items.equals(raw.items)
    assert back.rejects.equals(raw.rejects) and back.published_samples is None
    assert (back.lines_read, back.notes, back.line_files) == (raw.lines_read, raw.notes,
                                                              raw.line_files)
    ledger = Ledger("dedupe_reviews", 3, kept=2, rejected={"duplicate_review": 1})
    ledgers = LedgersDataset(filepath=str(tmp_path / "ledgers.json"))
    ledgers.save([ledger])
    assert ledgers.load() == [ledger]
