"""Stage 1 (alignment) and Stage 2 (reasoning) end to end, on the corpus tables.

Corpus contract (``alignment_corpus`` / ``reasoning_corpus``): columns ``task`` Utf8, ``prompt``
Utf8, ``response`` Utf8, ``split`` (``train`` | ``valid``), ``source_id`` Int64. Responses hold
SID tokens (``<a_12><b_7><c_201>``), for reasoning in the step-aligned layout; no eos in the text.

* :func:`build_tokenizer` -- scratch backbone: a BPE tokenizer trained on the prompts and
  responses of both corpora (``tokenizer_splits``) plus the SID tokens of ``sid_table``;
  pretrained backbone: its own tokenizer with the SID tokens added.
* :func:`train_align` -- builds the backbone and trains it on the alignment corpus.
* :func:`train_reason` -- continues from Stage 1's checkpoint on the reasoning corpus.
* :func:`evaluate_stage` -- valid SID accuracy (:mod:`sapo_pipeline.model.sid_eval`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.config_utils import to_dict
from sapo_pipeline.model.backbone import (
    Checkpoint,
    build_model,
    count_parameters,
    load_pretrained_tokenizer,
)
from sapo_pipeline.model.sft import LoopInfo, train_sft
from sapo_pipeline.model.sft_config import AlignConfig, ReasonConfig, SidEvalConfig, TrainConfig
from sapo_pipeline.model.sft_data import TokenizedCorpus, encode_prompts, tokenize_sft
from sapo_pipeline.model.sid_embeddings import init_sid_embeddings
from sapo_pipeline.model.sid_eval import evaluate_sids, target_sid
from sapo_pipeline.model.tokenizer import add_sid_tokens, train_tokenizer
from sapo_pipeline.sid.catalog import SIDTrie, is_sid_token, sid_token
from sapo_pipeline.sid.vectors import code_vectors
from sapo_pipeline.teacher.prompts import ALL_POSITION_TASKS

logger = logging.getLogger(__name__)

CORPUS_COLUMNS = {"task": pl.Utf8, "prompt": pl.Utf8, "response": pl.Utf8, "split": pl.Utf8,
                  "source_id": pl.Int64}
Callback = Callable[[LoopInfo], None]


def check_corpus(df: pl.DataFrame, name: str) -> None:
    """Raise ``ValueError`` naming the dataset, row and field of the first contract violation."""
    missing = [c for c in CORPUS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {df.columns}")
    for col, dtype in CORPUS_COLUMNS.items():
        if df.schema[col] != dtype:
            raise ValueError(f"{name}: column {col!r} is {df.schema[col]}, expected {dtype}")
        nulls = df[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise ValueError(f"{name}: row {row}, field {col!r} is null ({int(nulls.sum())} "
                             "null cells)")
    bad = ~df["split"].is_in(["train", "valid"])
    if bad.any():
        row = int(bad.arg_true()[0])
        raise ValueError(f"{name}: row {row}, field 'split' = {df['split'][row]!r}; expected "
                         "train | valid")


def select_rows(df: pl.DataFrame, split: str, tasks: Sequence[str] | None) -> pl.DataFrame:
    out = df.filter(pl.col("split") == split)
    if tasks is not None:
        out = out.filter(pl.col("task").is_in(list(tasks)))
    return out


def sid_vocabulary(sid_table: pl.DataFrame, codebook_size: int | None = None) -> list[str]:
    """SID tokens for the tokenizer: per level, codes 0 .. (codebook_size or max code + 1) - 1."""
    if "codes" not in sid_table.columns or sid_table.height == 0:
        raise ValueError("sid_table: needs a non-empty 'codes' column")
    codes = np.array(sid_table["codes"].to_list(), dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError("sid_table: SIDs of different lengths in 'codes'")
    tokens = []
    for level in range(codes.shape[1]):
        size = codebook_size or int(codes[:, level].max()) + 1
        if size <= codes[:, level].max():
            raise ValueError(f"sid_table: level {level} uses code {codes[:, level].max()} >= "
                             f"codebook_size={size}")
        tokens += [sid_token(level, c) for c in range(size)]
    return tokens


def build_tokenizer(cfg: AlignConfig, corpora: dict[str, pl.DataFrame],
                    sid_table: pl.DataFrame) -> Any:
    """The Stage-1 tokenizer (see the module docstring)."""
    sid_vocab = sid_vocabulary(sid_table, cfg.codebook_size)
    if cfg.backbone.kind == "pretrained":
        tok = load_pretrained_tokenizer(cfg.backbone)
        add_sid_tokens(tok, sid_vocab)
        return tok
    for name, df in corpora.items():
        check_corpus(df, name)

    def texts():
        for df in corpora.values():
            rows = df.filter(pl.col("split").is_in(cfg.tokenizer_splits))
            yield from rows["prompt"]
            yield from rows["response"]

    return train_tokenizer(texts(), cfg.tokenizer, sid_vocab)


def tokenize_corpus(df: pl.DataFrame, tokenizer: Any, cfg: TrainConfig, tasks: Sequence[str] | None,
                    name: str) -> tuple[TokenizedCorpus, TokenizedCorpus, dict[str, Any]]:
    """Train and valid examples of ``df`` with response-only labels, plus what was cut / skipped."""
    check_corpus(df, name)
    out, report = [], {}
    sid_ids = [i for t, i in tokenizer.get_vocab().items() if is_sid_token(t)]
    for split in ("train", "valid"):
        rows = select_rows(df, split, tasks)
        corpus, rep = tokenize_sft(rows["prompt"].to_list(), rows["response"].to_list(), tokenizer,
                                   cfg.max_length, source_ids=rows["source_id"].to_list(),
                                   separator=cfg.prompt_separator, overlong=cfg.overlong,
                                   what=f"{name}[{split}]",
                                   label_only=rows["task"].is_in(list(ALL_POSITION_TASKS))
                                   .to_list(), label_token_ids=sid_ids)
        out.append(corpus)
        report[split] = rep.to_dict()
    if len(out[0]) == 0:
        raise ValueError(f"{name}: no train rows" + (f" for tasks {list(tasks)}" if tasks else ""))
    report["tasks"] = (select_rows(df, "train", tasks).group_by("task").len().sort("task")
                       .to_dicts())
    return out[0], out[1], report


def _check_length(model: Any, cfg: TrainConfig) -> None:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit is not None and cfg.max_length > limit:
        raise ValueError(f"train.max_length={cfg.max_length} exceeds the model's "
                         f"max_position_embeddings={limit}")


def _run(stage: str, model: Any, tokenizer: Any, corpus: pl.DataFrame, corpus_name: str,
         tasks: Sequence[str] | None, cfg: TrainConfig, extra: dict[str, Any],
         callbacks: Sequence[Callback]) -> tuple[Checkpoint, list[dict]]:
    _check_length(model, cfg)
    train, valid, tok_report = tokenize_corpus(corpus, tokenizer, cfg, tasks, corpus_name)
    result = train_sft(model, train, valid, cfg, pad_id=tokenizer.pad_token_id, stage=stage,
                       callbacks=callbacks)
    extra = {**extra, "stage": stage, "training": result.summary, "tokenization": tok_report,
             "train_config": to_dict(cfg), "parameters": count_parameters(result.model),
             "trainable_parameters": count_parameters(result.model, trainable_only=True)}
    return Checkpoint(model=result.model, tokenizer=tokenizer, extra=extra), result.log


def train_align(alignment: pl.DataFrame, tokenizer: Any, sid_table: pl.DataFrame, cfg: AlignConfig,
                callbacks: Sequence[Callback] = (),
                sid_quantizer: dict[str, np.ndarray] | None = None) -> tuple[Checkpoint, list[dict]]:
    """Stage 1: build the backbone for ``tokenizer`` and train it on the alignment corpus.
    ``sid_quantizer`` (the SID catalog's quantiser state) is read with ``sid_init: codebook``."""
    init, record = None, {"method": cfg.sid_init}
    if cfg.sid_init == "codebook":
        if sid_quantizer is None:
            raise ValueError("align.sid_init=codebook needs the sid_quantizer (its codebooks)")
        books = code_vectors(sid_quantizer)

        def init(model: Any) -> None:
            record.update(init_sid_embeddings(model, tokenizer, books, seed=cfg.train.seed))

    model = build_model(cfg.backbone, tokenizer, seed=cfg.train.seed,
                        sid_tokens=sid_vocabulary(sid_table, cfg.codebook_size),
                        init_embeddings=init)
    extra = {"backbone": to_dict(cfg.backbone), "tasks": cfg.tasks, "sid_init": record}
    return _run("align", model, tokenizer, alignment, "alignment_corpus", cfg.tasks, cfg.train,
                extra, callbacks)


def replay_rows(alignment: pl.DataFrame | None, cfg: ReasonConfig, seed: int) -> pl.DataFrame:
    """The Stage-1 train rows of ``cfg.replay_tasks`` mixed into Stage 2 (a seeded subset of
    ``cfg.replay_max_rows``); empty when nothing is replayed."""
    if not cfg.replay_tasks:
        return pl.DataFrame(schema=CORPUS_COLUMNS)
    if alignment is None:
        raise ValueError("reason.replay_tasks needs the alignment corpus")
    check_corpus(alignment, "alignment_corpus")
    rows = select_rows(alignment, "train", cfg.replay_tasks)
    missing = sorted(set(cfg.replay_tasks) - set(rows["task"].unique().to_list()))
    if missing:
        raise ValueError(f"reason.replay_tasks: alignment_corpus has no train rows of {missing} "
                         f"(tasks present: {sorted(alignment['task'].unique().to_list())})")
    if cfg.replay_max_rows is not None and rows.height > cfg.replay_max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(rows.height, cfg.replay_max_rows,
                                                          replace=False))
        rows = rows[pick.tolist()]
    return rows.select(list(CORPUS_COLUMNS))


def train_reason(align: Checkpoint, reasoning: pl.DataFrame, cfg: ReasonConfig,
                 callbacks: Sequence[Callback] = (), alignment: pl.DataFrame | None = None
                 ) -> tuple[Checkpoint, list[dict]]:
    """Stage 2: continue Stage 1's model (weights, tokenizer) on the reasoning corpus, plus the
    replayed Stage-1 rows of ``cfg.replay_tasks`` (from ``alignment``)."""
    trainable = count_parameters(align.model, trainable_only=True)
    if trainable == 0:
        raise ValueError("align_model has no trainable parameters (a peft checkpoint must be "
                         "loaded with load_args.is_trainable: true)")
    check_corpus(reasoning, "reasoning_corpus")
    replay = replay_rows(alignment, cfg, cfg.train.seed)
    corpus = pl.concat([reasoning.select(list(CORPUS_COLUMNS)), replay]) if replay.height \
        else reasoning
    tasks = None if cfg.tasks is None else [*cfg.tasks, *cfg.replay_tasks]
    extra = {"from_stage": align.extra.get("stage", "align"), "tasks": cfg.tasks,
             "replay_tasks": cfg.replay_tasks, "replayed_rows": replay.height}
    return _run("reason", align.model, align.tokenizer, corpus, "reasoning_corpus", tasks,
                cfg.train, extra, callbacks)


def evaluate_stage(ckpt: Checkpoint, corpus: pl.DataFrame, sid_table: pl.DataFrame,
                   cfg: SidEvalConfig, train: TrainConfig, *, stage: str,
                   corpus_name: str) -> dict[str, Any]:
    """Valid SID accuracy of ``ckpt`` on the ``cfg.task`` rows of ``corpus`` (JSON-able)."""
    base = {"stage": stage, "task": cfg.task, "split": "valid", "layout": cfg.layout}
    if not cfg.enabled:
        return {**base, "enabled": False}
    check_corpus(corpus, corpus_name)
    rows = select_rows(corpus, "valid", [cfg.task])
    available = rows.height
    if available == 0:
        raise ValueError(f"{corpus_name}: no valid rows of task {cfg.task!r} to evaluate (tasks "
                         f"present: {sorted(corpus['task'].unique().to_list())})")
    if cfg.max_examples and available > cfg.max_examples:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(available, cfg.max_examples,
                                                              replace=False))
        rows = rows[pick.tolist()]
    trie = SIDTrie.from_table(sid_table)
    targets = [target_sid(r, f"{corpus_name} valid source_id={s}")
               for r, s in zip(rows["response"], rows["source_id"])]
    budget = trie.levels + 1
    if cfg.layout == "reasoning":
        budget += trie.levels * (cfg.think_max_tokens + 2)
    if train.max_length - budget < 1:
        raise ValueError(f"evaluation needs {budget} response tokens but train.max_length="
                         f"{train.max_length}")
    prompts = encode_prompts(rows["prompt"].to_list(), ckpt.tokenizer, train.max_length - budget,
                             train.prompt_separator)
    report = evaluate_sids(ckpt.model, ckpt.tokenizer, trie, prompts, targets, layout=cfg.layout,
                           batch_size=cfg.batch_size, think_max_tokens=cfg.think_max_tokens,
                           source_ids=rows["source_id"].to_list())
    logger.info("%s: valid SID exact match %.4f on %d rows (prefix %s)", stage,
                report["exact_match"], report["n"], report["prefix_accuracy"])
    return {**base, "enabled": True, "rows_available": available, **report}
