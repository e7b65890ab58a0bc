"""Thin nodes of the ``align`` pipeline; the logic lives in ``sapo_pipeline.model.sft_stages``."""

from __future__ import annotations

from typing import Any

import polars as pl

from sapo_pipeline.model.backbone import Checkpoint
from sapo_pipeline.model.sft_config import AlignConfig
from sapo_pipeline.model.sft_stages import build_tokenizer, evaluate_stage, train_align
from sapo_pipeline.model.sft_state import log_to_csv
from sapo_pipeline.parameters import load_section
from sapo_pipeline.stages import launch_stage


def _cfg(params: dict[str, Any]) -> AlignConfig:
    return load_section("align", params)


def train_align_tokenizer(alignment_corpus: pl.DataFrame, reasoning_corpus: pl.DataFrame,
                          sid_table: pl.DataFrame, params: dict[str, Any]) -> Any:
    """BPE tokenizer on both corpora + SID tokens (scratch), or the pretrained one extended."""
    corpora = {"alignment_corpus": alignment_corpus, "reasoning_corpus": reasoning_corpus}
    return build_tokenizer(_cfg(params), corpora, sid_table)


def train_align_model(alignment_corpus: pl.DataFrame, align_tokenizer: Any,
                      sid_table: pl.DataFrame, sid_quantizer: dict[str, Any],
                      params: dict[str, Any]) -> tuple[Checkpoint, str]:
    """Build the backbone (SID token rows from the quantiser's codebooks with
    ``align.sid_init: codebook``) and train it on the alignment corpus; the model and its log
    (CSV). With ``align.launcher.num_processes > 1`` the training runs under the launcher."""
    cfg = _cfg(params)
    if not cfg.launcher.in_process:
        return launch_stage("align", params, cfg.launcher, cfg.train.work_dir,
                            alignment_corpus=alignment_corpus, align_tokenizer=align_tokenizer,
                            sid_table=sid_table, sid_quantizer=sid_quantizer)
    checkpoint, log = train_align(alignment_corpus, align_tokenizer, sid_table, cfg,
                                  sid_quantizer=sid_quantizer)
    return checkpoint, log_to_csv(log)


def evaluate_align_model(align_model: Checkpoint, alignment_corpus: pl.DataFrame,
                         sid_table: pl.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Greedy trie-constrained SID accuracy on the valid history -> next SID rows."""
    cfg = _cfg(params)
    return evaluate_stage(align_model, alignment_corpus, sid_table, cfg.eval, cfg.train,
                          stage="align", corpus_name="alignment_corpus")
