"""The ``evaluate`` pipeline: structure, catalog factories, and a run with a fake decoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from sapo_pipeline.evaluation.metrics import compute_metrics
from sapo_pipeline.evaluation.predict import ModelSpec
from sapo_pipeline.evaluation.predictions import PREDICTIONS_SCHEMA, select_rows
from sapo_pipeline.pipelines.evaluate import create_pipeline

from kedro_helpers import base_catalog_config

REPO = Path(__file__).resolve().parents[1]


def _yaml(name: str, env: str = "base") -> dict:
    return yaml.safe_load((REPO / "conf" / env / name).read_text())


def test_default_pipeline_has_a_namespace_per_model_and_a_report_per_split():
    pipe = create_pipeline()
    names = {n.name for n in pipe.nodes}
    for model in ("sid_only", "sft_reasoning", "grpo", "sapo", "rere"):
        for split in ("valid", "test"):
            assert {f"{model}.predict_{split}", f"{model}.compute_metrics_{split}"} <= names
    for baseline in ("popularity", "sasrec"):  # predictions made by the baselines pipeline
        for split in ("valid", "test"):
            assert f"{baseline}.compute_metrics_{split}" in names
            assert f"{baseline}.predict_{split}" not in names
    assert {"comparison_report_valid", "comparison_report_test", "rl_cost_report"} <= names
    assert pipe.inputs() == {"align_model", "reason_model", "grpo.rl_model", "sapo.rl_model",
                             "rere.rl_model", "samples", "sid_table", "items",
                             "grpo.rl_log", "sapo.rl_log", "rere.rl_log",
                             "params:evaluate", "params:teacher_corpus",
                             *(f"{b}.baseline_predictions_{s}" for b in ("popularity", "sasrec")
                               for s in ("valid", "test"))}
    assert {"evaluation_test_report", "evaluation_valid_table", "evaluation_test_figure",
            "sapo.predictions_test", "sid_only.metrics_valid", "rl_cost_report",
            "rl_cost_table", "rl_cost_figure"} <= pipe.all_outputs()


def test_models_are_chosen_by_the_caller():
    pipe = create_pipeline(models=["sid_only", "sft_reasoning"], splits=["test"])
    assert pipe.inputs() >= {"align_model", "reason_model"}
    assert not any("rl_" in i for i in pipe.inputs())  # no RL models, no RL cost report
    assert {n.name for n in pipe.nodes} == {
        "sid_only.predict_test", "sid_only.compute_metrics_test", "sft_reasoning.predict_test",
        "sft_reasoning.compute_metrics_test", "comparison_report_test"}
    seeds = create_pipeline(models=[ModelSpec("sapo_s1", "sapo_s1.rl_model", True, "reasoning",
                                              method="sapo")])
    assert "sapo_s1.rl_model" in seeds.inputs()
    with pytest.raises(ValueError, match="unknown evaluated model"):
        create_pipeline(models=["nope"])
    with pytest.raises(ValueError, match="duplicated"):
        create_pipeline(models=["sapo", "sapo"])


def test_catalog_factories_resolve_namespaced_outputs():
    catalog = DataCatalog.from_config(base_catalog_config())
    ds = catalog["sapo.predictions_test"]
    assert type(ds).__name__ == "ParquetDataset"
    assert str(ds.path).endswith("07_model_output/evaluate/sapo/predictions_test.parquet")
    assert type(catalog["sid_only.sample_metrics_valid"]).__name__ == "ParquetDataset"
    assert str(catalog["sid_only.metrics_valid"].path).endswith("evaluate/sid_only/metrics_valid.json")
    assert type(catalog["evaluation_test_table"]).__name__ == "TextDataset"
    assert type(catalog["evaluation_valid_figure"]).__name__ == "MatplotlibPNGDataset"
    assert str(catalog["sasrec.baseline_predictions_test"].path).endswith(
        "07_model_output/baselines/sasrec/predictions_test.parquet")
    assert type(catalog["sasrec.baseline_model"]).__name__ == "SafetensorsDataset"


def test_parameters_validate_in_base_and_smoke():
    from sapo_pipeline.config_utils import ConfigError, from_dict
    from sapo_pipeline.evaluation.config import EvaluateConfig

    base = _yaml("parameters_evaluate.yml")["evaluate"]
    cfg = from_dict(EvaluateConfig, base, "evaluate")
    assert cfg.metrics.ks == (1, 3, 5, 10) and cfg.metrics.exclude_history is False
    smoke = _yaml("parameters_evaluate.yml", "smoke")["evaluate"]
    merged = {k: ({**base[k], **smoke[k]} if isinstance(base[k], dict) and k in smoke else
                  smoke.get(k, base[k])) for k in base}
    smoke_cfg = from_dict(EvaluateConfig, merged, "evaluate")
    assert smoke_cfg.rows_for("valid") == smoke_cfg.rows_for("test") == 16
    assert cfg.rows_for("test") == 1500 and cfg.rows_for("valid") == 100
    none = from_dict(EvaluateConfig, {**base, "max_samples": None}, "evaluate")
    assert none.rows_for("test") is None and none.rows_for("valid") == 100
    for bad, msg in (({"dev": 5}, "unknown split 'dev'"), ({"valid": 0}, "must be > 0"),
                     ({"valid": "x"}, "must be > 0")):
        with pytest.raises(ConfigError, match=msg):
            from_dict(EvaluateConfig, {**base, "max_samples_per_split": bad}, "evaluate")
    with pytest.raises(ConfigError, match="evaluate.report.paired_metrics"):
        from_dict(EvaluateConfig, {**base, "metrics": {"ks": [1, 5]}}, "evaluate")
    with pytest.raises(ConfigError, match="unknown parameter"):
        from_dict(EvaluateConfig, {**base, "metrix": {}}, "evaluate")


# -- a run with a fake model and decoder ----------------------------------------------------------
class FakeTokenizer:
    bos_token_id = 1

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts, add_special_tokens=False):
        self.seen.extend(texts)
        return {"input_ids": [[2 + ord(c) % 90 for c in t] for t in texts]}


class FakeModel:
    def __init__(self, bias: int):
        self.bias = bias
        self.calls: list[dict] = []

    def to(self, device):
        return self


def fake_beam_search(model, prompts, trie, vocab, num_beams, reasoning, max_think_tokens,
                     batch_size):
    """Ranks catalog SIDs by a hash of the prompt: deterministic, decodes only real items."""
    model.calls.append({"reasoning": reasoning, "n": len(prompts), "beams": num_beams})
    sids = trie.sids()
    out = []
    for p in prompts:
        rng = np.random.default_rng([sum(p) + model.bias, len(p)])
        order = rng.permutation(len(sids))[:num_beams]
        out.append([SimpleNamespace(codes=sids[i], score=-float(r)) for r, i in enumerate(order)])
    return out


@pytest.fixture()
def evaluated(tmp_path, monkeypatch):
    import sapo_pipeline.evaluation.predict as predict

    monkeypatch.setattr(predict, "_default_decoder", lambda: (fake_beam_search, lambda t, tr: None))
    rng = np.random.default_rng(0)
    n_items, n = 30, 90
    sid_table = pl.DataFrame({"item_id": list(range(n_items)),
                              "codes": [[i // 10, (i // 3) % 4, i % 3] for i in range(n_items)]})
    items = pl.DataFrame({"item_id": list(range(n_items)),
                          "title": [f"Item number {i}" for i in range(n_items)]})
    samples = pl.DataFrame({
        "sample_id": list(range(n)),
        "user_id": [f"u{i}" for i in range(n)],
        "history": [rng.integers(0, n_items, 3).tolist() for _ in range(n)],
        "target": rng.integers(0, n_items, n).tolist(),
        "split": ["train"] * 50 + ["valid"] * 20 + ["test"] * 20,
    }, schema={"sample_id": pl.Int64, "user_id": pl.Utf8, "history": pl.List(pl.Int64),
               "target": pl.Int64, "split": pl.Utf8})
    config = {name: {**cfg, "filepath": str(tmp_path / cfg["filepath"])}
              for name, cfg in base_catalog_config().items()}
    catalog = DataCatalog.from_config(config)
    params = _yaml("parameters_evaluate.yml")["evaluate"]
    params = {**params, "max_samples": 12, "decoding": {**params["decoding"], "num_beams": 5},
              "report": {**params["report"], "reference_method": "sft_reasoning"}}
    checkpoints = {"align_model": SimpleNamespace(model=FakeModel(0), tokenizer=FakeTokenizer()),
                   "reason_model": SimpleNamespace(model=FakeModel(1), tokenizer=FakeTokenizer())}
    for name, value in {"samples": samples, "sid_table": sid_table, "items": items,
                        "params:evaluate": params,
                        "params:popularity.baseline": {"kind": "popularity"},
                        "params:teacher_corpus": _yaml("parameters_teacher_corpus.yml")["teacher_corpus"],
                        **checkpoints}.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")  # keep the fakes' call logs
    from sapo_pipeline.pipelines import baselines

    pipe = baselines.create_pipeline(baselines=["popularity"]) + create_pipeline(
        models=["sid_only", "sft_reasoning", "popularity"])
    SequentialRunner().run(pipe, catalog)
    return SimpleNamespace(root=tmp_path / "data", samples=samples, sid_table=sid_table,
                           params=params, **checkpoints)


def test_run_writes_predictions_metrics_and_reports(evaluated):
    out = evaluated.root
    preds = pl.read_parquet(out / "07_model_output/evaluate/sid_only/predictions_test.parquet")
    assert preds.schema == pl.Schema(PREDICTIONS_SCHEMA)
    rows = select_rows(evaluated.samples, "test", 12, 0)
    assert sorted(preds["sample_id"].unique().to_list()) == rows["sample_id"].to_list()
    assert preds.group_by("sample_id").len()["len"].to_list() == [5] * 12
    assert preds["item_id"].null_count() == 0

    # the metrics node computed exactly what the library computes on the saved predictions
    summary = json.loads((out / "08_reporting/evaluate/sid_only/metrics_test.json").read_text())
    again = compute_metrics(preds, rows, evaluated.sid_table, (1, 3, 5, 10))
    assert summary["metrics"] == pytest.approx(again.summary["metrics"])
    assert summary["model"] == "sid_only" and summary["split"] == "test"

    # decoding layout and prompt template per model
    assert [c["reasoning"] for c in evaluated.align_model.model.calls] == [False, False]
    assert [c["reasoning"] for c in evaluated.reason_model.model.calls] == [True, True]
    # sid_only is decoded as it was trained (sid_sequence: the next SID continues the history)
    assert all(t.startswith("The user bought: <a_") and t.endswith(">, ")
               for t in evaluated.align_model.tokenizer.seen)
    assert all("Think step by step" in t for t in evaluated.reason_model.tokenizer.seen)

    for split, role in (("valid", "model selection"), ("test", "final numbers")):
        report = json.loads((out / f"08_reporting/evaluation_{split}.json").read_text())
        assert report["split"] == split and report["split_role"] == role
        assert [m["method"] for m in report["methods"]] == ["sid_only", "sft_reasoning",
                                                            "popularity"]
        assert [m["baseline"] for m in report["methods"]] == [False, False, True]
        assert report["n_rows"] == 12 and report["rows_in_split"] == 20
        assert {t["other"] for t in report["paired_tests"]} == {"sid_only", "popularity"}
        md = (out / f"08_reporting/evaluation_{split}.md").read_text()
        assert f"{split} split" in md and "seeded subset of the 20 rows" in md
        assert "| popularity (baseline) |" in md
        # the baseline was scored on the same rows, with the same K
        pop = pl.read_parquet(out / f"07_model_output/baselines/popularity/predictions_{split}"
                                    ".parquet")
        assert sorted(pop["sample_id"].unique().to_list()) == \
            select_rows(evaluated.samples, split, 12, 0)["sample_id"].to_list()
        assert pop.group_by("sample_id").len()["len"].to_list() == [5] * 12
        assert (out / f"08_reporting/evaluation_{split}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("reasoning", [False, True])
def test_predict_rows_with_the_real_beam_search_on_a_tiny_model(reasoning):
    """An untrained tiny model: predictions are arbitrary but must be B distinct catalog SIDs."""
    from sft_setup import tiny_setup

    from sapo_pipeline.evaluation.config import DecodingConfig
    from sapo_pipeline.evaluation.predict import predict_rows
    from sapo_pipeline.teacher.prompts import PromptConfig

    setup = tiny_setup()
    table = setup.table
    ids = table["item_id"].to_list()
    rows = pl.DataFrame({"sample_id": [5, 6, 7], "history": [ids[:3], ids[4:6], ids[9:10]],
                         "target": [ids[3], ids[6], ids[10]]},
                        schema={"sample_id": pl.Int64, "history": pl.List(pl.Int64),
                                "target": pl.Int64})
    ckpt = SimpleNamespace(model=setup.new_model(seed=0), tokenizer=setup.tokenizer)
    spec = ModelSpec("m", "m_model", reasoning=reasoning,
                     prompt_task="reasoning" if reasoning else "seq_sid")
    cfg = DecodingConfig(num_beams=4, max_think_tokens=3, batch_size=2, max_length=96,
                         device="cpu")
    preds, info = predict_rows(ckpt, rows, table, None, PromptConfig(), spec, cfg)
    assert preds.schema == pl.Schema(PREDICTIONS_SCHEMA)
    assert preds.group_by("sample_id").len().sort("sample_id")["len"].to_list() == [4, 4, 4]
    assert preds["item_id"].null_count() == 0
    assert preds.group_by("sample_id").agg(pl.col("item_id").n_unique())["item_id"].to_list() == [4] * 3
    scores = preds.sort("sample_id", "rank")["score"].to_numpy().reshape(3, 4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    assert info["rows"] == 3 and info["reasoning"] is reasoning
    res = compute_metrics(preds, rows, table, (1, 4))
    assert res.summary["validity"] == 1.0 and res.summary["n_samples"] == 3
    # exclude_history: the same model never returns a history item, and the rest keep order
    cut, info = predict_rows(ckpt, rows, table, None, PromptConfig(), spec,
                             dataclasses.replace(cfg, exclude_history=True))
    assert info["exclude_history"] is True
    for sid, hist in zip(rows["sample_id"], rows["history"], strict=True):
        got = cut.filter(pl.col("sample_id") == sid).sort("rank")["item_id"].to_list()
        before = preds.filter(pl.col("sample_id") == sid).sort("rank")["item_id"].to_list()
        assert len(got) == 4 and not set(got) & set(hist)
        kept = [i for i in before if i not in hist]
        assert got[:len(kept)] == kept


def test_start_pairs_auto_pairs_every_rl_namespace_with_its_stage2_start():
    from sapo_pipeline.config_utils import from_dict
    from sapo_pipeline.evaluation.config import EvaluateConfig
    from sapo_pipeline.evaluation.predict import ModelSpec
    from sapo_pipeline.pipelines.evaluate import STAGE_MODELS, rl_model
    from sapo_pipeline.pipelines.evaluate.nodes import start_pairs

    specs = [*STAGE_MODELS.values(), rl_model("sapo"), rl_model("sapo_no_norm"),
             ModelSpec.for_baseline("sasrec")]
    assert start_pairs("auto", specs) == (("sapo", "sft_reasoning"),
                                          ("sapo_no_norm", "sft_reasoning"),
                                          ("sft_reasoning", "sid_only"),
                                          ("sft_reasoning_sid", "sid_only"))
    assert start_pairs("auto", specs[1:]) == (("sapo", "sft_reasoning"),
                                              ("sapo_no_norm", "sft_reasoning"))
    assert start_pairs([["grpo", "sid_only"]], specs) == (("grpo", "sid_only"),)
    assert from_dict(EvaluateConfig, {}, "evaluate").report.start_pairs == "auto"
    with pytest.raises(Exception, match="start_pairs"):
        from_dict(EvaluateConfig, {"report": {"start_pairs": "every"}}, "evaluate")


def test_building_the_pipeline_warns_nothing_about_dotted_dataset_names():
    import warnings

    from kedro.pipeline import Node

    from sapo_pipeline.pipelines.evaluate import create_pipeline

    Node.__dotted_dataset_name_warned__ = False  # Kedro warns once per process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_pipeline(models=["sid_only", "sft_reasoning", "sapo", "popularity"])
    assert not [w for w in caught if "dataset names contain '.'" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # the check itself is still on
        warnings.simplefilter("always")
        Node(lambda x: x, "a.b", "c", name="dotted")
    assert [w for w in caught if "dataset names contain '.'" in str(w.message)]
