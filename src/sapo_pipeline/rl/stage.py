"""Stage 3 end to end on the project's tables: prompts, rollout source, training, checkpoint.

:func:`run_rl_stage` trains a *copy* of the stage-2 model (the given checkpoint is left
untouched, so every algorithm of one run starts from the same weights, and it serves as the
frozen reference model) and returns the RL checkpoint (model, the stage-2 tokenizer, ``extra``
with the config and the training summary) and the diagnostics rows.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import to_dict
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.model.backbone import Checkpoint, count_parameters
from sapo_pipeline.rl.config import RLTrainConfig
from sapo_pipeline.rl.prompts import PromptSet, build_prompt_set
from sapo_pipeline.rl.source import RolloutSource, make_rollout_source
from sapo_pipeline.rl.trainer import StepInfo, train_rl
from sapo_pipeline.sid.catalog import SIDTrie
from sapo_pipeline.teacher.prompts import PromptConfig

logger = logging.getLogger(__name__)


def rl_prompt_sets(samples: pl.DataFrame, items: pl.DataFrame, sid_table: pl.DataFrame,
                   prompt_cfg: PromptConfig, tokenizer: Any,
                   cfg: RLTrainConfig) -> tuple[PromptSet, PromptSet | None]:
    """Train prompts (``cfg.prompt_split``) and, when evaluation is on, valid prompts."""
    common = dict(task=cfg.prompt_task, max_prompt_tokens=cfg.max_prompt_tokens,
                  separator=cfg.prompt_separator, seed=cfg.seed)
    train = build_prompt_set(samples, items, sid_table, prompt_cfg, tokenizer,
                             split=cfg.prompt_split, max_prompts=cfg.max_prompts, **common)
    valid = None
    if cfg.eval_every:
        valid = build_prompt_set(samples, items, sid_table, prompt_cfg, tokenizer, split="valid",
                                 max_prompts=cfg.eval_prompts, **common)
    return train, valid


def run_rl_stage(reason: Checkpoint, samples: pl.DataFrame, items: pl.DataFrame,
                 sid_table: pl.DataFrame, prompt_cfg: PromptConfig, cfg: RLTrainConfig, *,
                 source: RolloutSource | None = None,
                 callbacks: Sequence[Callable[[StepInfo], None]] = (),
                 ) -> tuple[Checkpoint, list[dict[str, Any]]]:
    """Train with ``cfg``'s algorithm from ``reason`` (see the module docstring).

    ``source`` defaults to the decoding package's sampler (beam search for ReRe).
    """
    if count_parameters(reason.model, trainable_only=True) == 0:
        raise ValueError("reason_model has no trainable parameters (a peft checkpoint must be "
                         "loaded with load_args.is_trainable: true)")
    limit = getattr(getattr(reason.model, "config", None), "max_position_embeddings", None)
    trie = SIDTrie.from_table(sid_table)
    budget = trie.levels + 1 + (trie.levels * (cfg.max_think_tokens + 2) if cfg.reasoning else 0)
    if limit is not None and cfg.max_prompt_tokens + budget > limit:
        raise ValueError(f"rl.max_prompt_tokens={cfg.max_prompt_tokens} + {budget} response "
                         f"tokens exceed the model's max_position_embeddings={limit}")
    tokenizer = reason.tokenizer
    train, valid = rl_prompt_sets(samples, items, sid_table, prompt_cfg, tokenizer, cfg)
    vocab = SIDVocab.from_tokenizer(tokenizer, table=trie)
    if source is None:
        source = make_rollout_source(cfg, trie, vocab)
    policy = copy.deepcopy(reason.model)

    def ranker(model: Any, prompt_ids: list[list[int]]) -> list:
        """The evaluation's beam search (valid NDCG during training)."""
        from sapo_pipeline.decoding.beam import beam_search

        return beam_search(model, prompt_ids, trie, vocab, num_beams=cfg.eval_num_beams,
                           reasoning=cfg.reasoning, max_think_tokens=cfg.max_think_tokens,
                           batch_size=cfg.rollout_batch_size)

    result = train_rl(policy, train, source, cfg, valid=valid, reference=reason.model,
                      callbacks=callbacks, ranker=ranker if cfg.eval_num_beams else None)
    extra = {"stage": "rl", "algorithm": cfg.algorithm,
             "from_stage": reason.extra.get("stage", "reason"), "training": result.summary,
             "rl_config": to_dict(cfg), "train_prompts": len(train),
             "valid_prompts": len(valid) if valid is not None else 0,
             "parameters": count_parameters(result.model),
             "trainable_parameters": count_parameters(result.model, trainable_only=True)}
    logger.info("rl/%s: %d steps, last reward %s", cfg.algorithm, result.summary["steps"],
                result.summary["last_reward"])
    return Checkpoint(model=result.model, tokenizer=tokenizer, extra=extra), result.log

