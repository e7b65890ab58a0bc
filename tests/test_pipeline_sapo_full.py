"""``sapo_full`` on the smoke configuration, through Kedro's CLI, in a scratch project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.sid.catalog import SIDTrie, parse_sid
from sapo_pipeline.teacher.layout import parse_steps

from kedro_helpers import kedro, make_project


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("sapo_full_smoke"))
    kedro(project, "run", "--pipelines=sapo_full", "--env", "smoke")
    return project / "data" / "smoke"  # --env smoke writes under data/smoke (globals.yml)


def test_sid_catalog_is_complete_unique_and_reported(full_run: Path):
    items = pl.read_parquet(full_run / "03_primary" / "items.parquet")
    table = pl.read_parquet(full_run / "04_feature" / "sid_table.parquet")
    emb = np.load(full_run / "04_feature" / "item_embeddings.npy")
    assert emb.shape == (items.height, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert table["item_id"].to_list() == items["item_id"].to_list()
    assert table["sid"].n_unique() == items.height
    assert all(format_ok(s) for s in table["sid"].to_list())

    trie = SIDTrie.from_dict(json.loads((full_run / "04_feature" / "sid_trie.json").read_text()))
    codes = table["codes"].to_list()
    assert len(trie) == items.height
    first = tuple(codes[0])
    assert first[1] in trie.children(first[:1]) and trie.item_of(first) == table["item_id"][0]
    with pytest.raises(KeyError):
        trie.children((10_000,))

    report = json.loads((full_run / "08_reporting" / "sid_report.json").read_text())
    assert report["collision_rate_after"] == 0.0 and report["unique_sids"] == items.height
    assert report["levels_stats"][0]["codes_used"] > 1
    assert (full_run / "08_reporting" / "sid_catalog.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def format_ok(sid: str) -> bool:
    return len(parse_sid(sid)) == 3


def test_teacher_corpora_use_no_test_rows_and_parse(full_run: Path):
    samples = pl.read_parquet(full_run / "05_model_input" / "samples.parquet")
    reasoning = pl.read_parquet(full_run / "05_model_input" / "reasoning_corpus.parquet")
    alignment = pl.read_parquet(full_run / "05_model_input" / "alignment_corpus.parquet")
    table = pl.read_parquet(full_run / "04_feature" / "sid_table.parquet")
    assert set(reasoning["split"].unique()) == {"train", "valid"}
    split_of = dict(zip(samples["sample_id"].to_list(), samples["split"].to_list(), strict=True))
    assert {split_of[s] for s in reasoning["source_id"].to_list()} <= {"train", "valid"}
    assert all(split_of[s] == split for s, split in reasoning.select("source_id", "split").iter_rows())
    sid_of = dict(zip(table["item_id"].to_list(), table["codes"].to_list(), strict=True))
    target_of = dict(zip(samples["sample_id"].to_list(), samples["target"].to_list(), strict=True))
    for source_id, response in reasoning.select("source_id", "response").head(50).iter_rows():
        blocks, codes = parse_steps(response)
        assert len(blocks) == 3 and list(codes) == sid_of[target_of[source_id]]
    assert sorted(alignment["task"].unique()) == ["sid_sequence", "sid_to_description",
                                                  "sid_to_title", "title_to_sid"]
    # the all-position sequence task covers every train transition exactly once
    seq = alignment.filter((pl.col("task") == "sid_sequence") & (pl.col("split") == "train"))
    assert sum(r.count("<a_") for r in seq["response"]) == (samples["split"] == "train").sum()


def test_sft_stages_write_models_logs_and_valid_accuracy(full_run: Path):
    from sapo_pipeline.datasets import HFCheckpointDataset

    for stage in ("align", "reason"):
        report = json.loads((full_run / "08_reporting" / f"{stage}_eval.json").read_text())
        assert report["split"] == "valid" and report["n"] > 0
        assert report["valid_item_rate"] == 1.0  # trie-constrained: every answer is a catalog item
        log = pl.read_csv(full_run / "08_reporting" / f"{stage}_log.csv")
        assert log.height > 0 and log["train_loss"].is_finite().all()
    align = HFCheckpointDataset(filepath=str(full_run / "06_models" / "align_model")).load()
    reason = HFCheckpointDataset(filepath=str(full_run / "06_models" / "reason_model")).load()
    assert align.tokenizer.get_vocab() == reason.tokenizer.get_vocab()
    assert align.model.config.to_dict()["hidden_size"] == reason.model.config.to_dict()["hidden_size"]


def test_ends_in_the_comparison_report_rl_cost_and_stage_timings(full_run: Path):
    methods = ["sid_only", "sft_reasoning", "sft_reasoning_sid", "grpo", "sapo", "rere"]
    baselines = ["popularity", "sasrec"]
    for split in ("valid", "test"):
        report = json.loads((full_run / "08_reporting" / f"evaluation_{split}.json").read_text())
        assert [row["method"] for row in report["methods"]] == methods + baselines
        assert [row["baseline"] for row in report["methods"]] == [False] * 6 + [True] * 2
        assert report["split"] == split and report["dataset"] == "synthetic"
        md = (full_run / "08_reporting" / f"evaluation_{split}.md").read_text()
        assert all(f"| {m} |" in md for m in methods)
        assert all(f"| {b} (baseline) |" in md for b in baselines)
        pairs = {(t["reference"], t["other"]) for t in report["paired_tests"]}
        assert {("sapo", "sasrec"), ("sapo", "popularity"), ("grpo", "sft_reasoning"),
                ("rere", "sft_reasoning"), ("sapo", "sft_reasoning"),
                ("sft_reasoning_sid", "sid_only"), ("sft_reasoning", "sid_only")} <= pairs
    sasrec = json.loads((full_run / "08_reporting" / "baseline_sasrec.json").read_text())
    assert sasrec["kind"] == "sasrec" and sasrec["loss"] == "ce" and sasrec["log"]
    rl_log = pl.read_csv(full_run / "08_reporting" / "rl_sapo_log.csv")
    assert rl_log["eval_ndcg"].drop_nulls().len() >= 1  # valid NDCG over RL steps
    cost = json.loads((full_run / "08_reporting" / "rl_cost.json").read_text())
    assert cost["reference"] == "grpo" and set(cost["methods"]) == {"grpo", "sapo", "rere"}
    assert cost["methods"]["grpo"]["token_ratio"] == 1.0
    assert all(c["median_step_s"] > 0 and c["median_advantage_s"] >= 0
               for c in cost["methods"].values())
    assert (full_run / "08_reporting" / "rl_cost.png").read_bytes()[:4] == b"\x89PNG"
    timings = json.loads(next((full_run / "08_reporting" / "run_timings").glob("*.json")).read_text())
    assert {"ingest", "sid_catalog", "teacher_corpus", "align", "reason", "rl", "rl_sapo",
            "baselines", "baseline_sasrec", "evaluate"} <= set(timings["by_tag"])
    assert timings["run"]["pipeline_names"] == ["sapo_full"]


def test_an_env_writes_only_under_its_own_run_root(full_run: Path):
    """``--env smoke`` leaves the base run root (data/, what ``make run`` writes) untouched."""
    data = full_run.parent
    touched = [p for p in data.rglob("*") if p.is_file() and full_run not in p.parents]
    assert touched == []
    assert (full_run / "06_models" / "align_work").is_dir()  # work dirs follow the root too


@pytest.mark.slow
def test_the_same_seed_twice_gives_identical_models_and_metrics(full_run: Path, tmp_path: Path):
    """A second ``sapo_full`` smoke run in the same project under another run root: the first
    run's files untouched; the same SIDs, the same Stage-2 and RL weights, the same per-row test
    metrics of every model."""
    from safetensors.torch import load_file

    first_report = (full_run / "08_reporting" / "evaluation_test.json").read_bytes()
    project = full_run.parents[1]
    kedro(project, "run", "--pipelines=sapo_full", "--env", "smoke", "--params",
          "run_root=data/again")
    again = project / "data" / "again"
    assert (full_run / "08_reporting" / "evaluation_test.json").read_bytes() == first_report
    assert len(list((again / "08_reporting" / "run_timings").glob("*.json"))) == 1
    for table in ("04_feature/sid_table.parquet", "05_model_input/samples.parquet"):
        assert pl.read_parquet(full_run / table).equals(pl.read_parquet(again / table)), table
    for model in ("reason_model", "rl_sapo", "rl_grpo", "rl_rere"):
        first = load_file(full_run / "06_models" / model / "model.safetensors")
        second = load_file(again / "06_models" / model / "model.safetensors")
        assert first.keys() == second.keys()
        assert all(bool((first[k] == second[k]).all()) for k in first), model
    one = json.loads((full_run / "08_reporting" / "evaluation_test.json").read_text())
    two = json.loads((again / "08_reporting" / "evaluation_test.json").read_text())
    assert [m["metrics"] for m in one["methods"]] == [m["metrics"] for m in two["methods"]]
    assert one["paired_tests"] == two["paired_tests"]


@pytest.mark.slow
def test_another_seed_gives_other_models_on_the_same_rows(full_run: Path):
    """``--params seed=1`` (under its own run root): the same data and split, other SIDs and
    another Stage-1 model."""
    from safetensors.torch import load_file

    project = full_run.parents[1]
    kedro(project, "run", "--env", "smoke", "--pipelines=ingest,sid_catalog,teacher_corpus,align",
          "--params", "run_root=data/seed1,seed=1")
    other = project / "data" / "seed1"
    table = "05_model_input/samples.parquet"
    assert pl.read_parquet(full_run / table).equals(pl.read_parquet(other / table))
    sids = "04_feature/sid_table.parquet"
    assert not pl.read_parquet(full_run / sids).equals(pl.read_parquet(other / sids))
    first = load_file(full_run / "06_models" / "align_model" / "model.safetensors")
    second = load_file(other / "06_models" / "align_model" / "model.safetensors")
    assert any(not bool((first[k] == second[k]).all()) for k in first)
    extra = json.loads((other / "06_models" / "align_model" / "extra.json").read_text())
    assert extra["train_config"]["seed"] == 1


def test_notebooks_execute_on_the_smoke_outputs(full_run: Path, tmp_path: Path, monkeypatch):
    """notebooks/results.ipynb and training_dynamics.ipynb run top to bottom on a finished run
    (a copy of its reports, with a one-seed study of it beside them) and display figures."""
    import shutil

    import nbformat
    from nbclient import NotebookClient

    from sapo_pipeline.evaluation.study import build_study, write_study

    root = tmp_path / "run"
    shutil.copytree(full_run / "08_reporting", root / "08_reporting")
    write_study(build_study([full_run], dataset="smoke", n_bootstrap=50, n_permutations=200),
                root / "study")
    monkeypatch.setenv("SAPO_RUN_ROOT", str(root))
    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    for name in ("results.ipynb", "training_dynamics.ipynb"):
        nb = nbformat.read(notebooks / name, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(notebooks)}}).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert images, f"{name} displayed no figure"
        if name == "results.ipynb":  # the run's test and valid reports and the study
            assert len(images) == 3


def test_the_ablations_run_after_sapo_full_on_its_run_root(full_run: Path):
    """``kedro run --pipelines=ablations`` trains each ablation from the run's Stage-2 model and
    reports it beside the run's sapo, grpo and sft_reasoning, with SAPO's paired tests."""
    project = full_run.parents[1]
    before = (full_run / "08_reporting" / "evaluation_test.json").read_bytes()
    kedro(project, "run", "--pipelines=ablations", "--env", "smoke")
    report = json.loads((full_run / "08_reporting" / "ablations_test.json").read_text())
    names = {"sapo_no_step_adv", "sapo_no_step_norm", "sapo_independent_reward"}
    assert {m["method"] for m in report["methods"]} == {"sft_reasoning", "grpo", "sapo", *names}
    pairs = {(t["reference"], t["other"]) for t in report["paired_tests"]}
    assert {("sapo", n) for n in names} <= pairs and {(n, "sft_reasoning") for n in names} <= pairs
    for name in names:
        assert (full_run / "06_models" / f"rl_{name}").is_dir()
        assert (full_run / "08_reporting" / f"rl_{name}_log.csv").is_file()
    # sapo_full's own outputs are read, not rewritten
    assert (full_run / "08_reporting" / "evaluation_test.json").read_bytes() == before
