"""RL prompts: (history -> target) samples rendered and tokenised as the SFT stages saw them.

A prompt is the ``prompt_task`` template of :class:`~sapo_pipeline.teacher.prompts.PromptRenderer`
(``teacher_corpus.prompts``) for the sample's history, tokenised by
:func:`~sapo_pipeline.model.sft_data.encode_prompts` (``[bos] prompt + separator``, cut from the
left to ``max_prompt_tokens``): exactly the context the stage-2 model learned to answer. The
target is the SID codes of the sample's target item. Samples whose history or target has no SID
raise (naming the sample), they are never dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sapo_pipeline.model.sft_data import encode_prompts
from sapo_pipeline.sid.catalog import format_sid
from sapo_pipeline.teacher.prompts import PromptConfig, PromptRenderer

logger = logging.getLogger(__name__)


@dataclass
class PromptSet:
    """Tokenised prompts with their target SIDs, in a fixed order."""

    prompt_ids: list[list[int]]
    targets: np.ndarray  # int64 [P, K]
    source_ids: list[int]  # sample_id of each prompt

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int64)
        if self.targets.ndim != 2 or len(self.targets) != len(self.prompt_ids):
            raise ValueError(f"PromptSet: {len(self.prompt_ids)} prompts but targets of shape "
                             f"{self.targets.shape}")
        if len(self.source_ids) != len(self.prompt_ids):
            raise ValueError("PromptSet: one source id per prompt required")
        empty = [s for s, p in zip(self.source_ids, self.prompt_ids) if not p]
        if empty:
            raise ValueError(f"PromptSet: empty prompt for source ids {empty[:5]}")

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def levels(self) -> int:
        return int(self.targets.shape[1])

    def subset(self, index: Sequence[int] | np.ndarray) -> PromptSet:
        idx = [int(i) for i in index]
        return PromptSet([self.prompt_ids[i] for i in idx], self.targets[idx],
                         [self.source_ids[i] for i in idx])

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for sid, ids, tgt in zip(self.source_ids, self.prompt_ids, self.targets.tolist()):
            h.update(repr((sid, ids, tgt)).encode())
        return h.hexdigest()


def seeded_subset(n: int, cap: int | None, seed: int, salt: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` of size ``min(n, cap)``."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, salt]).choice(n, cap, replace=False))


def build_prompt_set(samples: pl.DataFrame, items: pl.DataFrame, sid_table: pl.DataFrame,
                     prompt_cfg: PromptConfig, tokenizer, *, split: str, task: str,
                     max_prompt_tokens: int, separator: str = " ", max_prompts: int | None = None,
                     seed: int = 0) -> PromptSet:
    """The ``split`` samples (sample_id order; a seeded subset of ``max_prompts``) as prompts."""
    for name, table, cols in (("samples", samples, ("sample_id", "history", "target", "split")),
                              ("sid_table", sid_table, ("item_id", "codes")),
                              ("items", items, ("item_id", "title"))):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"RL prompts: {name} lacks column(s) {missing}")
    if task not in prompt_cfg.templates:
        raise ValueError(f"RL prompts: prompt_task={task!r} has no template; tasks: "
                         f"{sorted(prompt_cfg.templates)}")
    codes = {int(i): tuple(int(c) for c in cs)
             for i, cs in zip(sid_table["item_id"], sid_table["codes"])}
    lengths = {len(c) for c in codes.values()}
    if len(lengths) != 1:
        raise ValueError(f"RL prompts: sid_table holds SIDs of lengths {sorted(lengths)}")
    titles = {int(i): (t or "") for i, t in zip(items["item_id"], items["title"])}
    renderer = PromptRenderer(prompt_cfg, {i: format_sid(c) for i, c in codes.items()}, titles)
    rows = samples.filter(pl.col("split") == split).sort("sample_id")
    if rows.height == 0:
        raise ValueError(f"RL prompts: samples has no {split!r} rows")
    pick = seeded_subset(rows.height, max_prompts, seed, 17 if split == "train" else 29)
    rows = rows[pick.tolist()]
    texts, targets, ids = [], [], []
    for sid, history, target in zip(rows["sample_id"], rows["history"], rows["target"]):
        if int(target) not in codes:
            raise ValueError(f"RL prompts: samples sample_id={sid}, field 'target': item "
                             f"{target} has no SID in sid_table")
        try:
            texts.append(renderer.prompt(task, history=list(history)))
        except KeyError as exc:
            raise ValueError(f"RL prompts: samples sample_id={sid}, field 'history': "
                             f"{exc.args[0]}") from None
        targets.append(codes[int(target)])
        ids.append(int(sid))
    prompt_ids = encode_prompts(texts, tokenizer, max_prompt_tokens, separator)
    logger.info("RL prompts: %d %s prompts (of %d), %d-%d tokens", len(prompt_ids), split,
                samples.filter(pl.col("split") == split).height,
                min(map(len, prompt_ids)), max(map(len, prompt_ids)))
    return PromptSet(prompt_ids, np.array(targets, dtype=np.int64), ids)
