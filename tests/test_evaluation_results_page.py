"""The results page generated from a study's JSON: evidence in words, targets, timings, commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_fakes import study_roots

from sapo_pipeline.evaluation import results_page as rp
from sapo_pipeline.evaluation.study import build_study, write_study


def _nodes(by_tag: dict, count: int, stamp: str) -> list[dict]:
    """``count`` nodes whose times sum to ``by_tag`` (the first node of each tag carries it)."""
    out = [{"node": f"{tag}_{stamp}", "tags": [tag], "seconds": s} for tag, s in by_tag.items()]
    out += [{"node": f"pad{i}_{stamp}", "tags": [], "seconds": 0.0}
            for i in range(max(0, count - len(out)))]
    return out


def _timing(root: Path, total: float, params: dict, stamp: str = "20260101T000000Z",
            nodes: int = 2, by_tag: dict | None = None) -> None:
    d = root / "08_reporting" / "run_timings"
    d.mkdir(parents=True, exist_ok=True)
    record = {"total_seconds": total,
              "by_tag": by_tag if by_tag is not None else {"align": total / 2, "rl": total / 4},
              "nodes": _nodes(by_tag if by_tag is not None else {"align": total / 2, "rl": total / 4},
                              nodes, stamp),
              "run": {"pipeline_names": ["sapo_full"], "env": "industrial",
                      "runtime_params": params, "code": {"commit": "0123456789abcdef",
                                                         "dirty": False}}}
    (d / f"{stamp}-run.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("results_page")
    roots, _ = study_roots(tmp)  # sapo = sft + 0.1 on every row; grpo = sft; popularity 0.05
    for seed, (root, total) in enumerate(zip(roots, (100.0, 300.0, 200.0), strict=True)):
        _timing(root, total, {"ingest": {"source": {"path": "raw dir"}}, "seed": seed})
        # a later run of one more stage into the same root (e.g. the evaluation alone)
        _timing(root, 1.0, {}, stamp="20260102T000000Z", nodes=1, by_tag={"evaluate": 1.0})
    report = build_study(roots, dataset="embedded_default", n_bootstrap=200,
                         n_permutations=500)
    study = write_study(report, tmp / "study")[0]
    out = tmp / "docs" / "results.md"
    assert rp.main([str(study), "--out", str(out)]) == 0
    return out, out.read_text()


def test_the_page_states_the_paired_evidence_in_words(page):
    _, text = page
    assert "## embedded_default" in text and "Seeds: 3" in text
    line = next(t for t in text.splitlines() if t.startswith("- sapo - sft_reasoning"))
    assert "+0.1000 ndcg@10" in line and "**sapo is better**" in line and "its Stage-2 start" in line
    line = next(t for t in text.splitlines() if t.startswith("- grpo - sft_reasoning"))
    assert "+0.0000" in line and "p = 1.000 raw" in line and "no detectable difference" in line
    assert any(t.startswith("- sapo - grpo: +0.1000") for t in text.splitlines())


def test_targets_table_figure_timings_and_commands(page):
    out, text = page
    assert "Weakest trained model (" in text and "for every trained model): met." in text
    assert "| popularity (baseline) | 3 | 0.0500 [0.0500, 0.0500] |" in text
    png = out.parent / "results" / "embedded_default_test.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](results/embedded_default_test.png)" in text
    # per root the latest run of each stage; medians over the roots: align 100, rl 50,
    # evaluate 1; sum 151
    assert "| | align | rl | evaluate | sum |" in text and "| wall s | 100 | 50 | 1 | 151 |" in text
    assert ("kedro run --pipelines=sapo_full --env industrial --params "
            "'ingest.source.path=raw dir,seed=1'  # code 0123456789") in text
    assert "python -m sapo_pipeline.evaluation.study " in text and "--n-bootstrap 200" in text
    assert text.count("kedro run --pipelines=sapo_full --env industrial") == 6  # 2 per root
    assert text.count("python -m sapo_pipeline.evaluation.results_page") == 1


def _report(means: dict[str, float], baselines=("popularity", "sasrec"), dataset="office"):
    cell = {"low": 0.0, "high": 1.0}
    return {"dataset": dataset, "paired_tests": [],
            "methods": [{"method": m, "baseline": m in baselines,
                         "metrics": {"ndcg@10": {"mean": v, **cell}}} for m, v in means.items()]}


def test_targets_are_met_or_missed_by_the_data_sets_threshold():
    lines = rp.target_lines(_report({"sid_only": 0.07, "sapo": 0.05, "sasrec": 0.1,
                                     "popularity": 0.02}))
    assert lines == ["- Best generative model (sid_only) 0.0700 = 0.70x SASRec's 0.1000 "
                     "(target >= 0.7x): met."]
    lines = rp.target_lines(_report({"sid_only": 0.07, "sapo": 0.05, "sft_reasoning_sid": 0.01,
                                     "sasrec": 0.1, "popularity": 0.02},
                                    dataset="embedded_default"))
    assert "(target >= 0.8x): **missed**." in lines[0]
    # the diagnostic sid-layout decode of the reasoning model is not a trained model of its own
    assert lines[1].startswith("- Weakest trained model (sapo) = 2.5x popularity")
    assert lines[1].endswith("**missed**.")


def test_a_raw_difference_that_fails_holm_is_said_so():
    report = _report({"sapo": 0.1, "grpo": 0.09})
    report["paired_tests"] = [{"reference": "grpo", "other": "sapo", "metric": "ndcg@10",
                               "mean_diff": -0.01, "low": -0.02, "high": -0.001,
                               "p_value": 0.02, "p_holm": 0.2}]
    (line,) = rp.evidence_lines(report)
    # the pair is stated from SAPO's side whichever way the report holds it
    assert line.startswith("- sapo - grpo: +0.0100 ndcg@10 [+0.0010, +0.0200], p = .020 raw")
    assert "does **not** survive the Holm adjustment" in line


def test_a_study_of_the_ablation_reports(tmp_path: Path):
    """``--report ablations``: the runs' ablations_<split>.json aggregated the same way; the page
    names it and its rebuild commands include the ablations pipeline."""
    from sapo_pipeline.evaluation.study import main as study_main

    roots, _ = study_roots(tmp_path)
    for root in roots:
        reports = root / "08_reporting"
        (reports / "evaluation_test.json").rename(reports / "ablations_test.json")
        _timing(root, 50.0, {}, nodes=3)
        record = next((reports / "run_timings").glob("*.json"))
        data = json.loads(record.read_text())
        data["run"]["pipeline_names"] = ["ablations"]
        (reports / "run_timings" / "20270101T000000Z-abl.json").write_text(json.dumps(data))
        record.unlink()
    assert study_main([*map(str, roots), "--dataset", "fake", "--report", "ablations",
                       "--n-bootstrap", "50", "--out", str(tmp_path / "s")]) == 0
    study = tmp_path / "s" / "ablations_study_test.json"
    assert json.loads(study.read_text())["report_name"] == "ablations"
    out = tmp_path / "results.md"
    rp.build_page([study], out)
    text = out.read_text()
    assert "## fake: the ablations of SAPO" in text and "Learning targets" not in text
    assert "--report ablations" in text and "kedro run --pipelines=ablations" in text
    assert (tmp_path / "results" / "fake_ablations_test.png").is_file()


@pytest.mark.parametrize("n_seeds", [1, 2, 3])
def test_the_page_says_how_many_seeds_a_data_set_rests_on(tmp_path: Path, n_seeds: int):
    """One seed: single-run numbers; two: short of the study's three; three: no warning."""
    roots, _ = study_roots(tmp_path)
    report = build_study(roots[:n_seeds], dataset="fake", n_bootstrap=50, n_permutations=200)
    study = write_study(report, tmp_path / "study")[0]
    out = tmp_path / "results.md"
    rp.build_page([study], out)
    text = out.read_text()
    assert f"Seeds: {n_seeds}" in text
    assert ("**1 seed only**: single-run numbers" in text) == (n_seeds == 1)
    assert ("**2 seeds only** (the study asks 3)" in text) == (n_seeds == 2)
