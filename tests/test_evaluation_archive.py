"""A run's archive: the study's files of a run root, kept and checkable, itself a run root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_fakes import study_roots

from sapo_pipeline.evaluation.archive import MANIFEST, archive_run, main, run_files, verify_archive
from sapo_pipeline.evaluation.study import build_study


def _with_extras(root: Path) -> Path:
    """What else a run root holds: a checkpoint and a timing record."""
    (root / "06_models" / "reason_model").mkdir(parents=True)
    (root / "06_models" / "reason_model" / "model.safetensors").write_bytes(b"\0" * 1000)
    timings = root / "08_reporting" / "run_timings"
    timings.mkdir(parents=True)
    (timings / "20261202T000000.json").write_text(json.dumps({"nodes": []}))
    return root


def test_the_archive_keeps_what_the_study_reads_and_nothing_else(tmp_path: Path):
    roots, _ = study_roots(tmp_path / "runs")
    for root in roots:
        _with_extras(root)
    archives = [tmp_path / "archive" / r.name for r in roots]
    for root, out in zip(roots, archives):
        manifest = archive_run(root, out)
        assert set(manifest["files"]) == {str(p) for p in run_files(root)}
    kept = {str(p.relative_to(archives[0])) for p in archives[0].rglob("*") if p.is_file()}
    assert "06_models/reason_model/model.safetensors" not in kept
    assert "08_reporting/run_timings/20261202T000000.json" in kept
    assert "07_model_output/evaluate/sapo/sample_metrics_test.parquet" in kept
    assert MANIFEST in kept
    assert verify_archive(archives[0]) == []
    # the archives are run roots: the study over them equals the study over the originals
    from_archives, from_roots = (build_study(r, dataset="d") for r in (archives, roots))
    for report in (from_archives, from_roots):
        report.pop("notes"), report.pop("run_roots")
    assert from_archives == from_roots


def test_a_changed_or_missing_file_is_reported(tmp_path: Path):
    (root,), _ = study_roots(tmp_path / "runs", seeds=1)
    out = tmp_path / "archive"
    archive_run(root, out)
    (out / "08_reporting" / "evaluate" / "grpo" / "metrics_test.json").write_text("{}")
    (out / "07_model_output" / "evaluate" / "sapo" / "sample_metrics_test.parquet").unlink()
    problems = verify_archive(out)
    assert any("grpo/metrics_test.json: sha256 differs" in p for p in problems)
    assert any("sapo/sample_metrics_test.parquet: missing" in p for p in problems)
    assert main(["--verify", str(out)]) == 1


def test_a_model_of_the_report_without_its_files_is_an_error(tmp_path: Path):
    (root,), _ = study_roots(tmp_path / "runs", seeds=1)
    (root / "08_reporting" / "evaluate" / "grpo" / "metrics_test.json").unlink()
    with pytest.raises(FileNotFoundError, match="grpo is in .*evaluation_test.json.*metrics_test"):
        archive_run(root, tmp_path / "archive")
    assert not (tmp_path / "archive").exists()
    with pytest.raises(FileNotFoundError, match="no 08_reporting"):
        run_files(tmp_path / "empty")


def test_archiving_again_replaces_the_archive(tmp_path: Path):
    roots, _ = study_roots(tmp_path / "runs", seeds=2)
    out = tmp_path / "archive"
    archive_run(roots[0], out)
    (out / "stale.txt").write_text("from before")
    assert main([str(roots[1]), "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / MANIFEST).read_text())["source_root"] == str(roots[1])


def test_the_committed_archives_are_intact_and_readable_as_run_roots():
    """Every archive under studies/results matches its manifest and loads as a run root."""
    from sapo_pipeline.evaluation.study import load_run

    results = Path(__file__).resolve().parents[1] / "studies" / "results"
    archives = sorted(p.parent for p in results.glob("*/seed*/" + MANIFEST))
    if not archives:
        pytest.skip("no archived study runs under studies/results")
    for archive in archives:
        assert verify_archive(archive) == [], archive
        assert load_run(archive), archive
