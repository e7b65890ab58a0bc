"""Thin nodes of the ``rl`` pipeline; the logic lives in ``sapo_pipeline.rl``."""

from __future__ import annotations

from typing import Any

import polars as pl

from sapo_pipeline.config_utils import from_dict
from sapo_pipeline.model.backbone import Checkpoint
from sapo_pipeline.rl.diagnostics import csv_to_log, log_to_csv, plot_diagnostics
from sapo_pipeline.rl.methods import rl_config_from_dict
from sapo_pipeline.rl.stage import run_rl_stage
from sapo_pipeline.stages import launch_stage
from sapo_pipeline.teacher.config import TeacherCorpusConfig


def train_rl_model(reason_model: Checkpoint, samples: pl.DataFrame, items: pl.DataFrame,
                   sid_table: pl.DataFrame, teacher_corpus: dict[str, Any],
                   rl: dict[str, Any]) -> tuple[Checkpoint, str]:
    """RL from the stage-2 model with the namespace's algorithm; the model and its log (CSV).
    With ``<namespace>.rl.launcher.num_processes > 1`` the training runs under the launcher."""
    cfg = rl_config_from_dict(rl, "rl")
    if not cfg.launcher.in_process:
        return launch_stage("rl", {"rl": rl, "teacher_corpus": teacher_corpus}, cfg.launcher,
                            cfg.work_dir, reason_model=reason_model, samples=samples,
                            items=items, sid_table=sid_table)
    prompts = from_dict(TeacherCorpusConfig, teacher_corpus, "teacher_corpus").prompts
    checkpoint, log = run_rl_stage(reason_model, samples, items, sid_table, prompts, cfg)
    return checkpoint, log_to_csv(log)


def plot_rl_log(rl_log: str, rl: dict[str, Any]) -> Any:
    """The per-step diagnostics as a figure (matplotlib, Agg)."""
    algorithm = rl.get("algorithm", "rl") if isinstance(rl, dict) else "rl"
    return plot_diagnostics(csv_to_log(rl_log), title=f"RL diagnostics ({algorithm})")
