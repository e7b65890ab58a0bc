"""The ``ingest`` pipeline through Kedro's CLI, in a scratch copy of the project."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from kedro_helpers import kedro, make_project


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("ingest_smoke"))
    kedro(project, "run", "--pipelines=ingest", "--env", "smoke")
    return project


def test_ingest_smoke_outputs_and_accounting(smoke_project: Path):
    data = smoke_project / "data" / "smoke"  # --env smoke writes under data/smoke
    report = json.loads((data / "08_reporting" / "ingest_report.json").read_text())
    manifest = json.loads((data / "01_raw" / "synthetic" / "_manifest.json").read_text())

    # Every line of the generated review file is kept, filtered by a named rule or rejected.
    totals = {t["step"]: t for t in report["totals"]}
    reviews = totals["reviews_end_to_end"]
    assert reviews["identity_holds"]
    assert reviews["rows_in"] == manifest["files"]["reviews"]["lines"]
    # The rejects are exactly the defects the generator injected, kind by kind.
    assert reviews["rejected"] == {k: v for k, v in manifest["defects"]["reviews"].items() if v}
    assert totals["items_end_to_end"]["filtered"]["item_without_title"] == manifest["defects"]["meta"]["empty_title"]

    rejects = pl.read_parquet(data / "02_intermediate" / "ingest_rejects.parquet")
    assert rejects.height == sum(reviews["rejected"].values())
    assert rejects["line"].min() >= 1 and rejects["file"].n_unique() == 1

    items = pl.read_parquet(data / "03_primary" / "items.parquet")
    samples = pl.read_parquet(data / "05_model_input" / "samples.parquet")
    assert items["item_id"].to_list() == list(range(items.height))
    assert report["catalog"]["items"] == items.height
    per_split = samples.group_by("split").len().sort("split")
    counts = dict(per_split.iter_rows())
    assert counts["train"] == int(samples.height * 0.8)
    assert counts["valid"] == int(samples.height * 0.9) - int(samples.height * 0.8)
    # chronological: every train target is no later than every test target
    t = samples.group_by("split").agg(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi"))
    t = {r["split"]: r for r in t.iter_rows(named=True)}
    assert t["train"]["hi"] <= t["valid"]["lo"] and t["valid"]["hi"] <= t["test"]["lo"]
    assert samples["history"].list.len().max() <= 10 and samples["history"].list.len().min() >= 1


def test_a_rerun_gives_the_same_files_and_skips_the_generator(smoke_project: Path):
    data = smoke_project / "data" / "smoke"  # --env smoke writes under data/smoke
    before = {p: _sha(data / p) for p in ("03_primary/items.parquet", "05_model_input/samples.parquet",
                                           "08_reporting/ingest_report.json")}
    raw_mtime = (data / "01_raw" / "synthetic" / "_manifest.json").stat().st_mtime
    kedro(smoke_project, "run", "--pipelines=ingest", "--env", "smoke")
    assert {p: _sha(data / p) for p in before} == before
    # the generator saw an up-to-date manifest and did not rewrite the raw files
    assert (data / "01_raw" / "synthetic" / "_manifest.json").stat().st_mtime == raw_mtime


def test_bad_parameter_fails_before_any_node(tmp_path: Path):
    project = make_project(tmp_path / "p")
    proc = kedro(project, "run", "--pipelines=ingest", "--env", "smoke",
                 "--params", "ingest.filters.k_cor=3", check=False)
    assert proc.returncode != 0
    assert "ingest.filters: unknown parameter(s) ['k_cor']" in proc.stdout + proc.stderr
    assert not (project / "data" / "smoke").exists()  # nothing written


def test_missing_raw_directory_is_a_clear_error(tmp_path: Path):
    project = make_project(tmp_path / "p")
    proc = kedro(project, "run", "--pipelines=ingest", "--env", "scientific", check=False)
    assert proc.returncode != 0
    assert "raw data directory data/01_raw/scientific does not exist" in proc.stdout + proc.stderr


@pytest.mark.realdata
def test_ingest_real_scientific(tmp_path: Path, shared_data: Path):
    project = make_project(tmp_path / "p")
    src = shared_data / "unisrec_cowpirec" / "Scientific"
    kedro(project, "run", "--pipelines=ingest", "--env", "scientific", "--params", f"ingest.source.path={src}")
    report = json.loads((project / "data" / "scientific" / "08_reporting" / "ingest_report.json").read_text())
    assert report["catalog"]["items"] == 4385
    assert report["interactions"] == {"rows": 59427, "users": 8442}
    assert report["samples"]["per_split"] == {"train": 34101, "valid": 8442, "test": 8442}


@pytest.mark.realdata
def test_ingest_real_office_keeps_published_rows(tmp_path: Path, shared_data: Path):
    project = make_project(tmp_path / "p")
    src = shared_data / "amazon" / "Office_Products"
    kedro(project, "run", "--pipelines=ingest", "--env", "office", "--params", f"ingest.source.path={src}")
    data = project / "data" / "office"
    report = json.loads((data / "08_reporting" / "ingest_report.json").read_text())
    assert report["catalog"]["items"] == 3459
    assert report["samples"]["per_split"]["test"] == 4866
    assert report["samples"]["per_split"]["valid"] == 4866
    samples = pl.read_parquet(data / "05_model_input" / "samples.parquet")
    train = samples.filter(pl.col("split") == "train")
    first_valid = samples.filter(pl.col("split") == "valid")["timestamp"].min()
    assert train.height > 0 and train["timestamp"].max() < first_valid
    # The first published test row, as in PROVENANCE.md: user A1179's history -> item 1595.
    test = samples.filter(pl.col("split") == "test")
    row = test.row(0, named=True)
    assert row["user_id"] == "A1179" and row["target"] == 1595
    assert row["history"] == [384, 289, 151, 809, 406, 227, 0, 0, 2432]
