"""The comparison report: every method, the convention, paired tests, published context apart."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.evaluation.metrics import compute_metrics
from sapo_pipeline.evaluation.predictions import PREDICTIONS_SCHEMA
from sapo_pipeline.evaluation.published import published_key, published_table
from sapo_pipeline.evaluation.report import Run, build_report, plot_report, render_markdown

N_ITEMS, N_ROWS = 40, 120
CATALOG = pl.DataFrame({"item_id": list(range(N_ITEMS)),
                        "codes": [[i // 10, (i // 2) % 5, i % 2] for i in range(N_ITEMS)]})
METHODS = {"sid_only": 0.05, "sft_reasoning": 0.10, "grpo": 0.15, "sapo": 0.45, "rere": 0.15}


def _samples() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"sample_id": list(range(N_ROWS)),
                         "history": [rng.integers(0, N_ITEMS, 3).tolist() for _ in range(N_ROWS)],
                         "target": rng.integers(0, N_ITEMS, N_ROWS).tolist()},
                        schema={"sample_id": pl.Int64, "history": pl.List(pl.Int64),
                                "target": pl.Int64})


def _run(name: str, p_first: float, seed: int, method: str | None = None,
         exclude: bool = False, samples: pl.DataFrame | None = None) -> Run:
    """A fake model that ranks the target first with probability p_first, else randomly."""
    samples = _samples() if samples is None else samples
    rng = np.random.default_rng(seed)
    codes = CATALOG["codes"].to_list()
    rows = {c: [] for c in PREDICTIONS_SCHEMA}
    for sid, target in zip(samples["sample_id"], samples["target"]):
        order = rng.permutation(N_ITEMS)[:10].tolist()
        if rng.random() < p_first:
            order = [target] + [i for i in order if i != target][:9]
        for rank, item in enumerate(order):
            rows["sample_id"].append(sid)
            rows["rank"].append(rank)
            rows["codes"].append(codes[item])
            rows["item_id"].append(item)
            rows["score"].append(-float(rank))
    res = compute_metrics(pl.DataFrame(rows, schema=PREDICTIONS_SCHEMA), samples, CATALOG,
                          ks=(1, 3, 5, 10), exclude_history=exclude)
    return Run(method=method or name, name=name, per_sample=res.per_sample, summary=res.summary)


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return [_run(m, p, seed=i) for i, (m, p) in enumerate(METHODS.items())]


def _report(runs, **kw):
    args = dict(dataset="synthetic", split="test", n_bootstrap=200, n_permutations=500)
    return build_report(runs, **{**args, **kw})


def test_report_has_every_method_the_split_rows_and_the_convention(runs):
    report = _report(runs, notes=["train split reconstructed from published histories"])
    md = render_markdown(report)
    assert [m["method"] for m in report["methods"]] == list(METHODS)
    for method in METHODS:
        assert f"| {method} |" in md
    assert "synthetic" in md.splitlines()[0] and "test split" in md.splitlines()[0]
    assert f"Rows: {N_ROWS}" in md
    assert "history items NOT excluded" in md and report["exclude_history"] is False
    assert "Note: train split reconstructed from published histories" in md
    assert "final numbers" in md
    # every cell is mean [low, high] and the interval contains the mean
    for m in report["methods"]:
        for v in m["metrics"].values():
            assert v["low"] <= v["mean"] <= v["high"]
    assert report["published_reference"] is None and "Published reference" not in md


def test_history_excluded_report_says_so():
    report = _report([_run("sapo", 0.4, 0, exclude=True), _run("grpo", 0.1, 1, exclude=True)])
    md = render_markdown(report)
    assert report["exclude_history"] is True and "history items EXCLUDED" in md


def test_paired_tests_of_sapo_against_every_other_method(runs):
    report = _report(runs)
    tests = report["paired_tests"]
    assert {(t["other"], t["metric"]) for t in tests} == {
        (m, k) for m in METHODS if m != "sapo" for k in ("ndcg@10", "recall@10")}
    for t in tests:
        assert t["reference"] == "sapo" and t["mean_diff"] > 0 and t["low"] > 0
        assert t["p_value"] < 0.01 and t["p_value"] <= t["p_holm"] < 0.05
    md = render_markdown(report)
    assert "| sapo - grpo | ndcg@10 |" in md


def test_no_reference_method_means_no_tests_and_says_why(runs):
    report = _report([r for r in runs if r.method != "sapo"])
    assert report["paired_tests"] == [] and "'sapo' was not evaluated" in report["paired_tests_note"]
    assert "'sapo' was not evaluated" in render_markdown(report)


def test_published_numbers_only_in_their_own_table_for_office(runs):
    report = _report(runs, dataset="office")
    md = render_markdown(report)
    head, _, published = md.partition("## Published reference numbers")
    assert published, "office report must carry the published table"
    assert "context only" in published.splitlines()[0]
    for name in ("MiniOneRec", "SIDReasoner", "TIGER", "SASRec"):
        assert name in published and name not in head
    assert "0.1648" in published and "0.1648" not in head  # SIDReasoner R@10
    assert {m["method"] for m in report["methods"]} == set(METHODS)
    industrial = render_markdown(_report(runs, dataset="Industrial_and_Scientific"))
    assert "0.1586" in industrial and "SIDReasoner" not in industrial
    none = render_markdown(_report(runs, dataset="office", published_reference="none"))
    assert "Published reference" not in none


def test_published_lookup():
    assert published_key("Office_Products") == "office"
    assert published_key("games") is None
    assert published_key("games", "industrial") == "industrial"
    assert published_table("office")["rows"][-1] == {
        "method": "SIDReasoner", "recall@5": 0.1373, "ndcg@5": 0.1119, "recall@10": 0.1648,
        "ndcg@10": 0.1208}


def test_several_seeds_average_per_row_and_report_spread():
    runs = [_run("sapo_s0", 0.4, 10, method="sapo"), _run("sapo_s1", 0.4, 11, method="sapo"),
            _run("grpo", 0.1, 12)]
    report = _report(runs)
    sapo = report["methods"][0]
    assert sapo["method"] == "sapo" and sapo["n_seeds"] == 2 and sapo["runs"] == ["sapo_s0", "sapo_s1"]
    each = [r.per_sample["ndcg@10"].mean() for r in runs[:2]]
    assert sapo["metrics"]["ndcg@10"]["mean"] == pytest.approx(np.mean(each))
    assert sapo["seed_spread"]["ndcg@10"]["std"] == pytest.approx(np.std(each, ddof=1))
    assert "Spread over seeds" in render_markdown(report)


def test_runs_on_different_rows_are_refused():
    other = _samples().head(100)
    with pytest.raises(ValueError, match="same rows"):
        _report([_run("sapo", 0.4, 0), _run("grpo", 0.1, 1, samples=other)])
    with pytest.raises(ValueError, match="other metric settings"):
        _report([_run("sapo", 0.4, 0), _run("grpo", 0.1, 1, exclude=True)])


def test_report_is_deterministic_and_plot_is_a_png(runs):
    a, b = _report(runs), _report(runs)
    assert a == b
    fig = plot_report(a, k=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == len(METHODS)


def test_start_pairs_add_tests_of_each_rl_method_against_its_stage2_start(runs):
    rl = "grpo"
    pairs = [(rl, "sft_reasoning"), ("sapo", "sft_reasoning"), ("nope", "sft_reasoning")]
    report = _report(runs, extra_pairs=pairs)
    got = [(t["reference"], t["other"]) for t in report["paired_tests"]]
    assert got.count((rl, "sft_reasoning")) == 2  # both paired metrics
    assert got.count(("sapo", "sft_reasoning")) == 2  # already a reference test: not repeated
    assert not any("nope" in p for p in got)
    plain = _report(runs)
    assert len(report["paired_tests"]) == len(plain["paired_tests"]) + 2
    # Holm adjusts over every test of the table
    assert all(t["p_holm"] >= t["p_value"] for t in report["paired_tests"])
    alone = _report([r for r in runs if r.method != "sapo"], extra_pairs=pairs)
    assert {(t["reference"], t["other"]) for t in alone["paired_tests"]} == {
        (rl, "sft_reasoning")} and alone["paired_tests_note"] is None


def test_baseline_runs_are_marked(runs):
    marked = [Run(method="sasrec", name="sasrec", per_sample=runs[0].per_sample,
                  summary=runs[0].summary, baseline=True), *runs[1:]]
    report = _report(marked)
    assert report["methods"][0]["baseline"] is True and not report["methods"][1]["baseline"]
    assert "| sasrec (baseline) |" in render_markdown(report)


def test_a_registered_metric_flows_into_rows_summary_report_and_paired_tests(monkeypatch):
    """Adding a ranking metric is one RANK_METRICS entry: MRR@K here, for this test only."""
    from sapo_pipeline.config_utils import from_dict
    from sapo_pipeline.evaluation import metrics
    from sapo_pipeline.evaluation.config import EvaluateConfig

    mrr = metrics.RankMetric("mrr", "MRR", "MRR",
                             lambda rank, k: pl.when(rank < k).then(1.0 / (rank + 1.0))
                             .otherwise(0.0))
    monkeypatch.setitem(metrics.RANK_METRICS, "mrr", mrr)
    run = _run("sapo", 0.45, seed=3)
    first = run.per_sample["hit_rank"].to_numpy()
    expected = np.where(np.isnan(first.astype(float)) | (first.astype(float) >= 10), 0.0,
                        1.0 / (np.nan_to_num(first.astype(float)) + 1.0))
    assert np.allclose(run.per_sample["mrr@10"].to_numpy(), expected)
    assert run.summary["metrics"]["mrr@10"] == pytest.approx(expected.mean())
    other = _run("grpo", 0.15, seed=4)
    report = _report([run, other], reference_method="sapo", paired_metrics=["mrr@10"])
    assert [t["metric"] for t in report["paired_tests"]] == ["mrr@10"]
    md = render_markdown(report)
    assert "| MRR@1 | MRR@3 | MRR@5 | MRR@10 |" in md
    assert from_dict(EvaluateConfig, {"report": {"paired_metrics": ["mrr@5"]}}, "evaluate")
    plot_report(report)  # one panel per metric
