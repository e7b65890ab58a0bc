"""The ``align`` and ``reason`` Kedro pipelines: wiring, parameters, catalog, a smoke run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sft_corpus
import yaml
from safetensors.numpy import save_file

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.model.sft_config import AlignConfig, ReasonConfig
from sapo_pipeline.pipelines.align import create_pipeline as align_pipeline
from sapo_pipeline.pipelines.reason import create_pipeline as reason_pipeline

from kedro_helpers import base_catalog_config, resolved_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_pipelines_are_wired_by_name():
    align = align_pipeline()
    assert [n.name for n in align.nodes] == ["train_align_tokenizer", "train_align_model",
                                             "evaluate_align_model"]
    assert align.inputs() == {"alignment_corpus", "reasoning_corpus", "sid_table", "sid_quantizer",
                              "params:align"}
    assert align.all_outputs() == {"align_tokenizer", "align_model", "align_log", "align_eval"}
    reason = reason_pipeline()
    assert [n.name for n in reason.nodes] == ["train_reason_model", "evaluate_reason_model"]
    assert reason.inputs() == {"align_model", "reasoning_corpus", "alignment_corpus", "sid_table",
                               "params:reason"}
    assert reason.all_outputs() == {"reason_model", "reason_log", "reason_eval"}


@pytest.mark.parametrize("env", ["base", "smoke"])
def test_parameter_files_validate(env):
    params = resolved_config("parameters", None if env == "base" else env)
    align, reason = params["align"], params["reason"]
    a, r = from_dict(AlignConfig, align, "align"), from_dict(ReasonConfig, reason, "reason")
    root = "data" if env == "base" else f"data/{env}"  # each env writes under its own root
    assert a.train.work_dir == f"{root}/06_models/align_work" and a.eval.task == "sid_sequence"
    assert r.train.work_dir == f"{root}/06_models/reason_work" and r.eval.layout == "reasoning"
    if env == "smoke":
        assert a.backbone.preset == "tiny" and a.train.max_steps <= 10
    else:
        assert a.train.autocast == "auto" and a.train.batching == "bucket"


def test_catalog_entries_exist_for_every_output():
    cat = base_catalog_config()
    for name in ("align_model", "reason_model"):
        assert cat[name]["type"] == "sapo_pipeline.datasets.HFCheckpointDataset"
        assert cat[name]["filepath"].startswith("data/06_models/")
    for name in ("align_log", "reason_log"):
        assert cat[name]["filepath"].endswith(".csv")
    for name in ("align_eval", "reason_eval"):
        assert cat[name]["filepath"].startswith("data/08_reporting/")
    assert cat["align_tokenizer"]["type"] == "sapo_pipeline.datasets.HFTokenizerDataset"


@pytest.mark.slow
def test_smoke_run_of_align_then_reason(tmp_path):
    kedro_helpers = pytest.importorskip("kedro_helpers")
    project = kedro_helpers.make_project(tmp_path / "project")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    table = sft_corpus.sid_table()
    alignment, reasoning = sft_corpus.corpora(table, 120)
    table.write_parquet(inputs / "sid_table.parquet")
    alignment.write_parquet(inputs / "alignment_corpus.parquet")
    reasoning.write_parquet(inputs / "reasoning_corpus.parquet")
    books = np.random.default_rng(0).standard_normal((3, 4, 8)).astype(np.float32)
    save_file({"codebooks": books}, str(inputs / "sid_quantizer.safetensors"))
    env = project / "conf" / "sft_e2e"
    env.mkdir()
    catalog = {name: {"type": "sapo_pipeline.datasets.ParquetDataset",
                      "filepath": str(inputs / f"{name}.parquet")}
               for name in ("sid_table", "alignment_corpus", "reasoning_corpus")}
    catalog["sid_quantizer"] = {"type": "sapo_pipeline.datasets.SafetensorsDataset",
                                "filepath": str(inputs / "sid_quantizer.safetensors")}
    env.joinpath("catalog_inputs.yml").write_text(yaml.safe_dump(catalog), encoding="utf-8")
    for f in ("parameters_align.yml", "parameters_reason.yml"):
        shutil.copy(CONF / "smoke" / f, env / f)
    align_params = _yaml(env / "parameters_align.yml")
    align_params["align"]["eval"]["task"] = "seq_sid"  # the hand-made corpus's sequence task
    align_params["align"]["sid_init"] = "codebook"       # SID rows from the codebooks above
    (env / "parameters_align.yml").write_text(yaml.safe_dump(align_params), encoding="utf-8")
    kedro_helpers.kedro(project, "run", "--env", "sft_e2e", "--pipelines", "align")
    kedro_helpers.kedro(project, "run", "--env", "sft_e2e", "--pipelines", "reason")
    data = project / "data"
    for stage in ("align", "reason"):
        assert (data / "06_models" / f"{stage}_model" / "config.json").is_file()
        extra = json.loads((data / "06_models" / f"{stage}_model" / "extra.json").read_text())
        assert extra["training"]["steps"] == 6 and extra["stage"] == stage
        if stage == "align":
            assert extra["sid_init"]["method"] == "codebook" and extra["sid_init"]["rows"] == 12
        log = (data / "08_reporting" / f"{stage}_log.csv").read_text().splitlines()
        assert log[0].startswith("step,epoch,train_loss,valid_loss") and len(log) == 7
        report = json.loads((data / "08_reporting" / f"{stage}_eval.json").read_text())
        assert report["stage"] == stage and report["n"] > 0 and report["valid_item_rate"] == 1.0
        assert (data / "06_models" / f"{stage}_work" / "checkpoint-000006").is_dir()
