"""The RL method registry: one declaration per method, asked by every place that depends on it;
RL namespaces (ablations included) come from parameters_rl.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sapo_pipeline.config_utils import ConfigError
from sapo_pipeline.parameters import validate_parameters
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, RLTrainConfig, SAPOConfig
from sapo_pipeline.rl.methods import (
    METHODS,
    RLSection,
    compute_advantages,
    method_of,
    rl_config_from_dict,
    rl_sections,
)

REPO = Path(__file__).resolve().parents[1]


def test_each_method_is_declared_once_with_its_config_and_rollout():
    assert list(METHODS) == ["grpo", "sapo", "rere"]
    assert {m: (METHODS[m].config, METHODS[m].rollout) for m in METHODS} == {
        "grpo": (GRPOConfig, "sample"), "sapo": (SAPOConfig, "sample"),
        "rere": (ReReConfig, "beam")}
    assert method_of(ReReConfig()).needs_beam_rank and not method_of(SAPOConfig()).needs_beam_rank
    assert isinstance(rl_config_from_dict({"algorithm": "sapo", "steps": 3}), SAPOConfig)
    with pytest.raises(TypeError, match="no RL method"):
        method_of(RLTrainConfig())
    with pytest.raises(TypeError, match="no RL method"):
        compute_advantages(RLTrainConfig(), rollout=None)


def test_rollout_source_follows_the_method():
    from decoding_fixtures import setup

    from sapo_pipeline.rl.source import BeamSampler, GroupSampler, make_rollout_source

    s = setup()
    assert isinstance(make_rollout_source(ReReConfig(), s.trie, s.vocab), BeamSampler)
    assert isinstance(make_rollout_source(SAPOConfig(), s.trie, s.vocab), GroupSampler)


def test_an_ablation_is_one_yaml_entry_validated_like_the_others():
    base = yaml.safe_load((REPO / "conf/base/parameters_rl.yml").read_text())
    # the _rl_shared anchor is not one; the paper's ablations are, marked ablation: true
    assert rl_sections(base) == ["grpo", "sapo", "rere", "sapo_no_step_adv", "sapo_no_step_norm",
                                 "sapo_independent_reward"]
    ablation = {"rl": {**base["sapo"]["rl"], "step_normalised": False,
                       "work_dir": "data/06_models/rl_sapo_no_norm_work"}}
    sections = validate_parameters({**base, "sapo_no_norm": ablation})
    assert isinstance(sections["sapo_no_norm"], RLSection)
    assert sections["sapo_no_norm"].rl.step_normalised is False
    with pytest.raises((ConfigError, ValueError), match="step_normalised|bogus"):
        validate_parameters({"sapo_no_norm": {"rl": {"algorithm": "sapo", "bogus": 1}}})


def test_namespaces_reach_the_rl_and_evaluate_pipelines(tmp_path: Path):
    from sapo_pipeline.pipelines.evaluate import create_pipeline as evaluate_pipeline
    from sapo_pipeline.pipelines.evaluate import rl_models
    from sapo_pipeline.pipelines.rl import create_pipeline, rl_namespaces

    assert rl_namespaces(REPO) == ("grpo", "sapo", "rere")  # sapo_full's: no ablation
    assert rl_namespaces(REPO, ablations=True) == (
        "sapo_no_step_adv", "sapo_no_step_norm", "sapo_independent_reward")
    conf = tmp_path / "conf" / "base"
    conf.mkdir(parents=True)
    text = (REPO / "conf/base/parameters_rl.yml").read_text()
    text += ("\nsapo_no_norm:\n  rl:\n    <<: *rl_shared\n    algorithm: sapo\n"
             "    step_normalised: false\n    work_dir: data/06_models/rl_sapo_no_norm_work\n")
    (conf / "parameters_rl.yml").write_text(text)
    (tmp_path / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "sapo_pipeline"\n'
                                             'project_name = "x"\nkedro_init_version = "1.0.0"\n')
    assert rl_namespaces(tmp_path) == ("grpo", "sapo", "rere", "sapo_no_norm")
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert {n.namespace for n in create_pipeline().nodes} == {
            "grpo", "sapo", "rere", "sapo_no_norm"}
        assert "sapo_no_norm" in rl_models()
        assert "sapo_no_norm.predict_test" in {n.name for n in evaluate_pipeline().nodes}
    finally:
        os.chdir(here)


def test_the_ablations_pipeline_trains_scores_and_reports_only_the_ablations(monkeypatch):
    from sapo_pipeline.pipelines import ablations, sapo_full

    monkeypatch.chdir(REPO)
    pipe = ablations.create_pipeline()
    names = ("sapo_no_step_adv", "sapo_no_step_norm", "sapo_independent_reward")
    assert {n.namespace for n in pipe.nodes} == {*names, None}
    for name in names:
        assert {f"{name}.train_rl_model", f"{name}.predict_test",
                f"{name}.compute_metrics_valid"} <= {n.name for n in pipe.nodes}
    report = next(n for n in pipe.nodes if n.name == "ablations_report_test")
    assert report.tags == {"ablations"}
    assert report.outputs == ["ablations_test_report", "ablations_test_table",
                              "ablations_test_figure"]
    # beside what sapo_full trained on the same run root: read from the catalog, not rebuilt
    compared = {i.split(".")[0] for i in report.inputs if i.endswith(".metrics_test")}
    assert compared == {"sft_reasoning", "grpo", "sapo", *names}
    assert {"sapo.metrics_test", "reason_model"} <= pipe.inputs()
    full = {n.namespace for n in sapo_full.create_pipeline().nodes}
    assert not full & set(names)
