"""The typed parameter sections: the dataclass defaults are the defaults users get, and a partial
section overrides only what it names."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sapo_pipeline.baselines.registry import baseline_config_from_dict
from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.model.sft_config import AlignConfig, ReasonConfig
from sapo_pipeline.parameters import SECTIONS, load_section, validate_parameters
from sapo_pipeline.rl.methods import is_ablation, rl_config_from_dict, rl_sections

from kedro_helpers import resolved_config

REPO = Path(__file__).resolve().parents[1]
#: Fields that a namespace must set itself (every RL run has its own resume directory).
PER_NAMESPACE = {"work_dir"}


def _base_params() -> dict[str, Any]:
    return resolved_config("parameters")


def _differences(got: Any, default: Any, path: str) -> list[str]:
    if dataclasses.is_dataclass(got) and type(got) is type(default):
        return [d for f in dataclasses.fields(got)
                for d in _differences(getattr(got, f.name), getattr(default, f.name),
                                      f"{path}.{f.name}")]
    return [] if got == default else [f"{path}: YAML {got!r}, default {default!r}"]


def _section_defaults(key: str, section: dict[str, Any]) -> tuple[Any, Any]:
    """(the section as the YAML gives it, the same section from its defaults alone)."""
    if key in ("popularity", "sasrec"):
        kind = section["baseline"]["kind"]
        return (baseline_config_from_dict(section["baseline"])[1],
                baseline_config_from_dict({"kind": kind})[1])
    if key in SECTIONS:
        return load_section(key, section), from_dict(type(load_section(key, section)), {}, key)
    algorithm = section["rl"]["algorithm"]
    return rl_config_from_dict(section["rl"]), rl_config_from_dict({"algorithm": algorithm})


def test_base_yaml_repeats_the_dataclass_defaults_and_changes_none():
    params = _base_params()
    sections = [k for k in params if k in SECTIONS] + rl_sections(params)
    assert {"align", "reason", "evaluate", "ingest", "sid_catalog", "teacher_corpus", "grpo",
            "sapo", "rere", "popularity", "sasrec"} <= set(sections)
    problems = []
    for key in sections:
        if is_ablation(params[key]):  # an ablation changes one thing on purpose (next test)
            continue
        got, default = _section_defaults(key, params[key])
        problems += [p for p in _differences(got, default, key)
                     if p.split(":")[0].rsplit(".", 1)[-1] not in PER_NAMESPACE]
    assert not problems, "conf/base differs from the dataclass defaults:\n" + "\n".join(problems)


def test_each_ablation_is_sapo_with_one_switch_changed():
    params = _base_params()
    ablations = [k for k in rl_sections(params) if is_ablation(params[k])]
    assert set(ablations) == {"sapo_no_step_adv", "sapo_no_step_norm", "sapo_independent_reward"}
    changed = {}
    for key in ablations:
        got, default = _section_defaults(key, params[key])
        diffs = [p.split(":")[0].rsplit(".", 1)[-1] for p in _differences(got, default, key)]
        changed[key] = [d for d in diffs if d not in PER_NAMESPACE]
    assert changed == {"sapo_no_step_adv": ["step_advantage"],
                       "sapo_no_step_norm": ["step_normalised"],
                       "sapo_independent_reward": ["reward"]}


def test_a_partial_nested_section_keeps_the_stage_defaults_it_does_not_name():
    align = from_dict(AlignConfig, {"train": {"epochs": 9}}, "align")
    assert align.train.epochs == 9
    assert align.train.batch_size == AlignConfig().train.batch_size == 32  # the stage's, not 16
    assert align.train.work_dir == "data/06_models/align_work"
    reason = from_dict(ReasonConfig, {"train": {"lr": 1e-4}, "eval": {"batch_size": 8}}, "reason")
    assert (reason.train.lr, reason.train.max_length, reason.train.work_dir) == (
        1e-4, 768, "data/06_models/reason_work")
    assert (reason.eval.layout, reason.eval.max_examples, reason.eval.batch_size) == (
        "reasoning", 200, 8)
    with pytest.raises(ConfigError, match=r"align.train: TrainConfig.lr=-1: must be > 0"):
        from_dict(AlignConfig, {"train": {"lr": -1}}, "align")
    with pytest.raises(ConfigError, match=r"align.train: unknown parameter\(s\) \['epoch'\]"):
        from_dict(AlignConfig, {"train": {"epoch": 2}}, "align")


def test_every_base_section_validates():
    params = _base_params()
    built = validate_parameters(params)
    assert set(built) == {k for k in params if not k.startswith("_")}


@pytest.mark.parametrize("env", ["smoke", "scientific", "office", "industrial", "games"])
def test_every_environment_validates(env: str):
    """An environment's overrides merge into base sections that still validate (a typo or a
    wrong type in conf/<env> fails here, not an hour into a run)."""
    params = resolved_config("parameters", env)
    assert set(validate_parameters(params)) == {k for k in params if not k.startswith("_")}


@pytest.mark.parametrize("env", ["base", "smoke", "scientific", "office", "industrial", "games"])
def test_a_baseline_ranked_under_another_history_convention_is_named_in_the_report(env: str):
    """A baseline that masks its history items ranks under a convention the generative models do
    not follow: the environment's report notes must say so, or its numbers read as like for like."""
    params = resolved_config("parameters", None if env == "base" else env)
    masked = [name for name, section in params.items() if isinstance(section, dict)
              and isinstance(section.get("baseline"), dict)
              and section["baseline"].get("mask_history")]
    notes = " ".join(params["evaluate"].get("report", {}).get("notes", []))
    for name in masked:
        assert f"{name} (baseline)" in notes and "mask_history" in notes, (env, name, notes)
    if params["evaluate"].get("decoding", {}).get("exclude_history"):
        assert "exclude_history" in notes, (env, notes)


def test_scientific_takes_its_measured_stage2_recipe():
    teacher = load_section("teacher_corpus", resolved_config("parameters", "scientific")
                           ["teacher_corpus"])
    assert teacher.teacher.rule.style == "evidence" and teacher.reasoning.max_train >= 34101
    assert teacher.prompts == load_section("teacher_corpus", _base_params()["teacher_corpus"]
                                           ).prompts


def test_parameters_command_lists_every_field_of_a_section_with_its_default_and_help(capsys):
    from sapo_pipeline.parameters import main

    assert main(["reason"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "reason.train.lr: 0.0005  # Peak learning rate (AdamW)." in lines
    assert any(line.startswith("reason.train.betas: [0.9, 0.95]  # ") for line in lines)
    nested = ("train", "eval", "launcher")  # flattened: one line per field of each
    assert len(lines) == len(dataclasses.fields(ReasonConfig)) - len(nested) + sum(
        len(dataclasses.fields(type(getattr(ReasonConfig(), n)))) for n in nested)
    assert any(line.startswith("reason.launcher.num_processes: 1  # ") for line in lines)
    assert main(["sapo"]) == 0
    assert "sapo.steps: 16  # " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nope"])


def test_a_partial_section_derives_values_anew_instead_of_copying_derived_defaults():
    """BackboneConfig derives its widths from ``preset`` in ``__post_init__``: a partial
    ``backbone: {preset: tiny}`` must give the tiny widths, not the default preset's."""
    from sapo_pipeline.model.backbone import PRESETS

    align = from_dict(AlignConfig, {"backbone": {"preset": "tiny"}}, "align")
    assert align.backbone.hidden_size == PRESETS["tiny"]["hidden_size"]
    assert align.backbone.num_hidden_layers == PRESETS["tiny"]["num_hidden_layers"]
    assert from_dict(AlignConfig, {}, "align").backbone.hidden_size == PRESETS["default"][
        "hidden_size"]


def test_the_run_seed_reaches_every_training_stage_and_not_the_data_or_the_rows():
    """``--params seed=<n>``: SID quantiser (42 + n), corpora, Stage 1 / 2, every RL namespace and
    SASRec move with it; the data, its split and the evaluated rows do not."""
    default, seeded = resolved_config("parameters"), resolved_config("parameters", None, {"seed": "3"})
    moved = {"sid_catalog": ("seed",), "teacher_corpus": ("seed",), "align": ("train", "seed"),
             "reason": ("train", "seed"), "sasrec": ("baseline", "seed"),
             **{ns: ("rl", "seed") for ns in rl_sections(default)}}  # ablations included
    assert {"grpo", "sapo", "rere", "sapo_no_step_adv"} <= set(moved)

    def get(params: dict, section: str, path: tuple[str, ...]) -> Any:
        value = params[section]
        for key in path:
            value = value[key]
        return value

    for section, path in moved.items():
        assert get(seeded, section, path) == get(default, section, path) + 3, section
    assert get(default, "sid_catalog", ("seed",)) == 42
    for section, path in [("ingest", ("generator", "seed")), ("evaluate", ("seed",)),
                          ("evaluate", ("stats", "seed"))]:
        assert get(seeded, section, path) == get(default, section, path), (section, path)
