"""Predictions of a trained model on the evaluated rows: prompts -> beam search -> table.

Prompts are rendered by :class:`sapo_pipeline.teacher.prompts.PromptRenderer` from the same
templates the training corpora used (``teacher_corpus.prompts``) and tokenised exactly as in
training (:func:`sapo_pipeline.model.sft_data.encode_prompts`: bos + prompt + separator, cut from
the left to what the response budget leaves). Decoding is
:func:`sapo_pipeline.decoding.beam.beam_search`, trie-constrained; it is imported when first
used (torch and the decoder load only for a prediction run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from sapo_pipeline.evaluation.config import DecodingConfig
from sapo_pipeline.evaluation.predictions import predictions_from_hits
from sapo_pipeline.sid.catalog import SIDTrie, format_sid
from sapo_pipeline.teacher.prompts import ITEM_TASKS, TASKS, PromptConfig, PromptRenderer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """How one evaluated model is decoded.

    ``name``: the run / namespace (``sid_only``, ``sapo``, ``sapo_seed1``); ``model_input``: the
    catalog entry of its checkpoint; ``reasoning``: step-wise reasoning decoding (else plain SID
    decoding); ``prompt_task``: the prompt template (``seq_sid`` / ``reasoning``); ``method``: the
    report row it belongs to (several runs -- seeds -- of one method share it; default ``name``);
    ``training_log``: the catalog entry of its RL diagnostics log, when it has one (the RL
    training-cost summary compares these). ``baseline``: a classic recommender whose
    ``<name>.predictions_<split>`` come from the ``baselines`` pipeline (no checkpoint to decode:
    ``model_input`` is unused); the report marks its row.
    """

    name: str
    model_input: str | None
    reasoning: bool
    prompt_task: str
    method: str | None = None
    training_log: str | None = None
    baseline: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"ModelSpec.name={self.name!r}: must be an identifier (a namespace)")
        if self.prompt_task not in TASKS or self.prompt_task in ITEM_TASKS:
            raise ValueError(f"ModelSpec({self.name}).prompt_task={self.prompt_task!r}: must be a "
                             f"history task, e.g. seq_sid or reasoning")
        if self.model_input is None and not self.baseline:
            raise ValueError(f"ModelSpec({self.name}): model_input is required (or baseline=True)")
        if self.method is not None and not self.method.strip():
            raise ValueError(f"ModelSpec({self.name}).method: empty")

    @property
    def label(self) -> str:
        return self.method or self.name

    @classmethod
    def for_baseline(cls, name: str) -> ModelSpec:
        """The spec of a ``baselines`` namespace (its predictions are made there)."""
        return cls(name, None, reasoning=False, prompt_task="seq_sid", baseline=True)


def render_prompts(rows: pl.DataFrame, sid_table: pl.DataFrame, items: pl.DataFrame | None,
                   prompts: PromptConfig, task: str) -> list[str]:
    """The ``task`` prompt of every row (``history`` item ids), in row order."""
    sids = {int(i): format_sid(c) for i, c in zip(sid_table["item_id"], sid_table["codes"])}
    titles: dict[int, str] = {}
    if items is not None and "title" in items.columns:
        titles = {int(i): t for i, t in zip(items["item_id"], items["title"]) if t is not None}
    renderer = PromptRenderer(prompts, sids, titles)
    out = []
    for sample_id, history in zip(rows["sample_id"], rows["history"]):
        try:
            out.append(renderer.prompt(task, history=list(history)))
        except KeyError as exc:
            raise ValueError(f"sample_id={sample_id}: cannot render the {task!r} prompt: {exc}") \
                from None
    return out


def response_budget(levels: int, reasoning: bool, max_think_tokens: int) -> int:
    """Tokens the response may take: K SID tokens + eos (+ K think blocks with their markers)."""
    budget = levels + 1
    if reasoning:
        budget += levels * (max_think_tokens + 2)
    return budget


def _default_decoder() -> tuple[Callable[..., Any], Callable[[Any, SIDTrie], Any]]:
    from sapo_pipeline.decoding.beam import beam_search
    from sapo_pipeline.decoding.vocab import SIDVocab

    return beam_search, lambda tokenizer, trie: SIDVocab.from_tokenizer(tokenizer, table=trie)


def _place(model: Any, device: str) -> Any:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("evaluate.decoding.device='cuda' but no GPU is available")
    return model.to(device)


def history_sids(rows: pl.DataFrame, sid_table: pl.DataFrame) -> list[list[tuple[int, ...]]]:
    """Each row's history items as their SIDs (for ``exclude_history``); an item without a SID
    is an error naming the row."""
    sid_of = dict(zip(sid_table["item_id"].to_list(),
                      (tuple(c) for c in sid_table["codes"].to_list()), strict=True))
    out = []
    for sample_id, history in zip(rows["sample_id"], rows["history"]):
        missing = [i for i in history if i not in sid_of]
        if missing:
            raise ValueError(f"exclude_history: sample {sample_id} has history item "
                             f"{missing[0]} without a SID in the sid_table")
        out.append(sorted({sid_of[i] for i in history}))
    return out


def predict_rows(checkpoint: Any, rows: pl.DataFrame, sid_table: pl.DataFrame,
                 items: pl.DataFrame | None, prompts: PromptConfig, spec: ModelSpec,
                 cfg: DecodingConfig, decoder: Any = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Beam-search predictions of ``checkpoint`` (a ``Checkpoint``: model + tokenizer) on ``rows``.

    Returns the predictions table and a small run report (rows, seconds, prompt truncations).
    ``decoder``: ``(beam_search, make_vocab)``, for tests; default the project decoder.
    """
    from sapo_pipeline.model.sft_data import encode_prompts

    beam_search, make_vocab = decoder or _default_decoder()
    trie = SIDTrie.from_table(sid_table)
    texts = render_prompts(rows, sid_table, items, prompts, spec.prompt_task)
    room = cfg.max_length - response_budget(trie.levels, spec.reasoning, cfg.max_think_tokens)
    if room < 2:
        raise ValueError(f"evaluate.decoding.max_length={cfg.max_length} leaves no room for a "
                         f"prompt next to the {spec.name} response budget")
    tokenizer = checkpoint.tokenizer
    ids = encode_prompts(texts, tokenizer, room, cfg.prompt_separator)
    full = encode_prompts(texts, tokenizer, 10**9, cfg.prompt_separator)
    truncated = sum(len(a) != len(b) for a, b in zip(ids, full))
    if truncated:
        log.warning("%s: %d of %d prompts cut from the left to %d tokens", spec.name, truncated,
                    len(ids), room)
    vocab = make_vocab(tokenizer, trie)
    model = checkpoint.model
    import torch

    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        model = _place(model, cfg.device)
        start = time.perf_counter()
        extra = {"exclude": history_sids(rows, sid_table)} if cfg.exclude_history else {}
        with torch.no_grad():
            hits = beam_search(model, ids, trie, vocab, num_beams=cfg.num_beams,
                               reasoning=spec.reasoning, max_think_tokens=cfg.max_think_tokens,
                               batch_size=cfg.batch_size, **extra)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    if len(hits) != rows.height:
        raise ValueError(f"beam_search returned {len(hits)} beam lists for {rows.height} prompts")
    preds = predictions_from_hits(rows["sample_id"].to_list(), hits, trie.item_of)
    info = {"model": spec.name, "rows": rows.height, "beams": preds.height,
            "seconds": round(seconds, 3), "prompts_truncated": truncated,
            "reasoning": spec.reasoning, "prompt_task": spec.prompt_task,
            "exclude_history": cfg.exclude_history}
    log.info("%s: %d rows decoded (%d beams) in %.1fs", spec.name, rows.height, preds.height,
             seconds)
    return preds, info
