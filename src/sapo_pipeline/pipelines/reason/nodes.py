"""Thin nodes of the ``reason`` pipeline; the logic lives in ``sapo_pipeline.model.sft_stages``."""

from __future__ import annotations

from typing import Any

import polars as pl

from sapo_pipeline.model.backbone import Checkpoint
from sapo_pipeline.model.sft_config import ReasonConfig
from sapo_pipeline.model.sft_stages import evaluate_stage, train_reason
from sapo_pipeline.model.sft_state import log_to_csv
from sapo_pipeline.parameters import load_section
from sapo_pipeline.stages import launch_stage


def _cfg(params: dict[str, Any]) -> ReasonConfig:
    return load_section("reason", params)


def train_reason_model(align_model: Checkpoint, reasoning_corpus: pl.DataFrame,
                       alignment_corpus: pl.DataFrame, params: dict[str, Any]
                       ) -> tuple[Checkpoint, str]:
    """Continue Stage 1's model on the reasoning corpus (+ replayed Stage-1 rows); the model and
    its log (CSV). With ``reason.launcher.num_processes > 1`` the training runs under the
    launcher."""
    cfg = _cfg(params)
    if not cfg.launcher.in_process:
        return launch_stage("reason", params, cfg.launcher, cfg.train.work_dir,
                            align_model=align_model, reasoning_corpus=reasoning_corpus,
                            alignment_corpus=alignment_corpus)
    checkpoint, log = train_reason(align_model, reasoning_corpus, cfg, alignment=alignment_corpus)
    return checkpoint, log_to_csv(log)


def evaluate_reason_model(reason_model: Checkpoint, reasoning_corpus: pl.DataFrame,
                          sid_table: pl.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Greedy think blocks + trie-constrained SID tokens: valid SID accuracy."""
    cfg = _cfg(params)
    return evaluate_stage(reason_model, reasoning_corpus, sid_table, cfg.eval, cfg.train,
                          stage="reason", corpus_name="reasoning_corpus")
