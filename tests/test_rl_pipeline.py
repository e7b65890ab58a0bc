"""The ``rl`` Kedro pipeline: namespaced wiring, parameter files, catalog factories, and a run of
the namespaced pipeline (all three methods, the decoding package's real sampler and beam search)
on a tiny stage-2 stand-in."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from decoding_fixtures import setup as decoding_setup
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.model.backbone import Checkpoint
from sapo_pipeline.pipelines.rl import base_pipeline, create_pipeline, rl_namespaces
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, SAPOConfig
from sapo_pipeline.rl.diagnostics import csv_to_log
from sapo_pipeline.rl.methods import RLSection
from sapo_pipeline.settings import CONFIG_LOADER_ARGS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ("grpo", "sapo", "rere")  # the namespaces of conf/base/parameters_rl.yml
CLASSES = {"grpo": GRPOConfig, "sapo": SAPOConfig, "rere": ReReConfig}


def test_namespaced_wiring_keeps_shared_inputs_and_namespaces_outputs():
    base = base_pipeline()
    assert base.inputs() == {"reason_model", "samples", "items", "sid_table",
                             "params:teacher_corpus", "params:rl"}
    assert base.all_outputs() == {"rl_model", "rl_log", "rl_figure"}
    assert create_pipeline(methods=["sapo"]).inputs() == base.inputs() - {"params:rl"} | {
        "params:sapo.rl"}
    p = create_pipeline()
    assert rl_namespaces() == DEFAULT_METHODS == ("grpo", "sapo", "rere")
    assert p.inputs() == {"reason_model", "samples", "items", "sid_table",
                          "params:teacher_corpus", "params:grpo.rl", "params:sapo.rl",
                          "params:rere.rl"}
    assert p.all_outputs() == {f"{m}.{d}" for m in DEFAULT_METHODS
                               for d in ("rl_model", "rl_log", "rl_figure")}
    assert {n.name for n in p.nodes} == {f"{m}.{n}" for m in DEFAULT_METHODS
                                         for n in ("train_rl_model", "plot_rl_log")}
    assert {n.namespace for n in p.nodes} == set(DEFAULT_METHODS)
    with pytest.raises(ValueError, match="distinct identifiers"):
        create_pipeline(methods=("sapo", "sapo"))


def _params(env: str) -> dict:
    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(REPO / "conf"), **args)["parameters"]


@pytest.mark.parametrize("env", ["base", "smoke"])
def test_parameter_files_build_each_method_config(env):
    params = _params(env)
    for method, cls in CLASSES.items():
        section = from_dict(RLSection, params[method], method)
        cfg = section.rl
        assert type(cfg) is cls and cfg.algorithm == method
        root = "data" if env == "base" else f"data/{env}"  # each env under its own root
        assert cfg.work_dir == f"{root}/06_models/rl_{method}_work"
        if env == "smoke":
            assert cfg.steps <= 3 and cfg.group_size <= 4 and not cfg.progress_bar
        else:
            assert cfg.group_size == 8 and cfg.beta == 0.04
    sapo = from_dict(RLSection, params["sapo"], "sapo").rl
    assert sapo.step_advantage and sapo.step_normalised and sapo.aggregation_mode == "step"


def test_parameter_errors_name_the_field():
    with pytest.raises(ConfigError, match="algorithm='ppo'"):
        from_dict(RLSection, {"rl": {"algorithm": "ppo"}}, "x")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['step_advantage'\]"):
        from_dict(RLSection, {"rl": {"algorithm": "grpo", "step_advantage": False}}, "x")
    with pytest.raises(ConfigError, match="group_size=1"):
        from_dict(RLSection, {"rl": {"algorithm": "sapo", "group_size": 1}}, "x")
    with pytest.raises(ConfigError, match="reward='exact'"):
        from_dict(RLSection, {"rl": {"algorithm": "sapo", "reward": "exact"}}, "x")
    with pytest.raises(ConfigError, match="temperature"):
        from_dict(RLSection, {"rl": {"algorithm": "rere", "temperature": 0.7}}, "x")
    with pytest.raises(ConfigError, match="min_think_tokens"):
        from_dict(RLSection, {"rl": {"algorithm": "grpo", "min_think_tokens": 9,
                                     "max_think_tokens": 4}}, "x")


def test_catalog_factories_resolve_per_method():
    args = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    conf = OmegaConfigLoader(str(REPO / "conf"), **args)["catalog"]
    catalog = DataCatalog.from_config({k: v for k, v in conf.items() if "rl_" in k})
    for method in ("grpo", "sapo_no_step_adv"):
        desc = catalog.get(f"{method}.rl_model")._describe()
        assert Path(desc["filepath"]) == Path(f"data/06_models/rl_{method}")
        assert Path(catalog.get(f"{method}.rl_log")._describe()["filepath"]) == Path(
            f"data/08_reporting/rl_{method}_log.csv")
        assert type(catalog.get(f"{method}.rl_figure")).__name__ == "MatplotlibPNGDataset"


def _tables():
    s = decoding_setup()
    ids = list(range(100, 100 + len(s.codes)))
    sid_table = pl.DataFrame({"item_id": ids, "codes": [list(c) for c in s.codes]},
                             schema={"item_id": pl.Int64, "codes": pl.List(pl.Int64)})
    items = pl.DataFrame({"item_id": ids, "title": [f"thing {i}" for i in ids]})
    rows = []
    for k in range(12):
        rows.append({"sample_id": k, "history": [ids[(k + j) % len(ids)] for j in range(3)],
                     "target": ids[(k * 5) % len(ids)], "split": "train" if k < 8 else "valid"})
    samples = pl.DataFrame(rows, schema={"sample_id": pl.Int64, "history": pl.List(pl.Int64),
                                         "target": pl.Int64, "split": pl.Utf8})
    return s, samples, items, sid_table


def test_namespaced_pipeline_runs_every_method_from_the_same_model(tmp_path):
    torch.set_num_threads(1)
    s, samples, items, sid_table = _tables()
    start = {k: v.clone() for k, v in s.model.state_dict().items()}
    common = dict(steps=2, prompts_per_step=2, group_size=3, max_think_tokens=3,
                  max_prompt_tokens=96, eval_every=2, eval_prompts=2, progress_bar=False,
                  device="cpu", num_threads=1, lr=1e-3, checkpoint_every=1)
    datasets = {"reason_model": MemoryDataset(Checkpoint(s.model, s.tokenizer,
                                                         {"stage": "reason"}), copy_mode="assign"),
                "samples": MemoryDataset(samples), "items": MemoryDataset(items),
                "sid_table": MemoryDataset(sid_table),
                "params:teacher_corpus": MemoryDataset({})}
    for m in DEFAULT_METHODS:
        datasets[f"params:{m}.rl"] = MemoryDataset(
            {**common, "algorithm": m, "work_dir": str(tmp_path / m)}, copy_mode="deepcopy")
    out = SequentialRunner().run(create_pipeline(), DataCatalog(datasets=datasets))
    out = {k: (v.load() if hasattr(v, "load") else v) for k, v in out.items()}
    # the shared stage-2 model is untouched (each method trained a copy)
    assert all(torch.equal(start[k], v) for k, v in s.model.state_dict().items())
    for m in DEFAULT_METHODS:
        ckpt = out[f"{m}.rl_model"]
        assert ckpt.extra["algorithm"] == m and ckpt.extra["training"]["steps"] == 2
        assert ckpt.extra["from_stage"] == "reason" and len(ckpt.tokenizer) == len(s.tokenizer)
        moved = any(not torch.equal(start[k], v) for k, v in ckpt.model.state_dict().items())
        assert moved, m
        assert (tmp_path / m / "checkpoint-000002" / "state.json").is_file()
        assert f"{m}.rl_figure" in out
    # the logs are in the catalog only as intermediate memory datasets; read one via the work dir
    log = csv_to_log((tmp_path / "sapo" / "log.csv").read_text())
    assert [r["step"] for r in log] == [1, 2] and log[1]["eval_reward_step3"] is not None
    assert 0.0 < log[0]["loss_token_share"] < 1.0  # forced markers and eos carry no loss
