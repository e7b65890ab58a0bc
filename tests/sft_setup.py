"""Shared tiny fixtures of the test_sft_* modules: tokenizer, tokenized corpus, model, config."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import sft_corpus

from sapo_pipeline.model.backbone import BackboneConfig, build_model
from sapo_pipeline.model.sft_config import TrainConfig
from sapo_pipeline.model.sft_data import TokenizedCorpus, tokenize_sft
from sapo_pipeline.model.sft_stages import select_rows, sid_vocabulary
from sapo_pipeline.model.tokenizer import TokenizerConfig, train_tokenizer


@dataclass
class TinySetup:
    table: pl.DataFrame
    alignment: pl.DataFrame
    reasoning: pl.DataFrame
    tokenizer: Any
    train: TokenizedCorpus
    valid: TokenizedCorpus

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def new_model(self, seed: int = 0, **arch: Any) -> Any:
        cfg = BackboneConfig(preset="tiny", **arch)
        return build_model(cfg, self.tokenizer, seed=seed, sid_tokens=sid_vocabulary(self.table))


@functools.cache
def tiny_setup(n_rows: int = 160) -> TinySetup:
    table = sft_corpus.sid_table()
    alignment, reasoning = sft_corpus.corpora(table, n_rows)
    texts = [*alignment["prompt"], *alignment["response"], *reasoning["prompt"],
             *reasoning["response"]]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=400), sid_vocabulary(table))
    parts = []
    for split in ("train", "valid"):
        rows = select_rows(alignment, split, None)
        corpus, _ = tokenize_sft(rows["prompt"].to_list(), rows["response"].to_list(), tok, 64,
                                 source_ids=rows["source_id"].to_list())
        parts.append(corpus)
    return TinySetup(table, alignment, reasoning, tok, parts[0], parts[1])


def train_config(work_dir: str | Path, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "epochs": 1, "max_steps": 12, "batch_size": 8, "lr": 3e-3, "max_length": 64,
        "eval_every": 4, "log_every": 2, "checkpoint_every": 4, "work_dir": str(work_dir),
        "resume": "auto", "progress_bar": False, "warmup_steps": 2,
    }
    base.update(overrides)
    return TrainConfig(**base)
