"""The training corpora: the stage-1 alignment corpus and the stage-2 reasoning corpus.

Both are tables of :data:`CORPUS_SCHEMA` (``task, prompt, response, split, source_id``), one
row per example. Sequence tasks draw (history -> target) samples from the ``train`` split for
training rows and from ``valid`` for the small valid corpus; the ``test`` split is never read.
Item tasks (title <-> SID, SID -> description) draw train rows from the whole catalog and valid
rows from the targets of valid samples, so item-task valid rows may repeat train items (item
metadata is the catalog, not held-out behaviour; the stats count the overlap).

Every cap is a parameter; a capped draw is a seeded random subset, kept in ``source_id`` order.
Teacher answers that are rejected produce no row and are counted by task, split and reason.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from sapo_pipeline.data.sequences import user_sequences, windows
from sapo_pipeline.sid.catalog import format_sid
from sapo_pipeline.teacher.base import ItemInfo, Outcome, ReasoningRequest, Teacher
from sapo_pipeline.teacher.config import SPLITS, TeacherCorpusConfig
from sapo_pipeline.teacher.hierarchy import Hierarchy
from sapo_pipeline.teacher.layout import LayoutError, render_steps
from sapo_pipeline.teacher.prompts import (
    ALL_POSITION_TASKS,
    REASONING_TASK,
    PromptConfig,
    PromptRenderer,
    continuation_check,
)

log = logging.getLogger(__name__)

CORPUS_SCHEMA: dict[str, pl.DataType] = {
    "task": pl.Utf8,
    "prompt": pl.Utf8,
    "response": pl.Utf8,
    "split": pl.Utf8,  # "train" | "valid"
    "source_id": pl.Int64,  # sample_id (sequence tasks), item_id (item tasks), window (sid_sequence train)
}


@dataclass
class CorpusContext:
    """Catalog lookups every builder needs."""

    items: dict[int, ItemInfo]
    codes: dict[int, tuple[int, ...]]
    renderer: PromptRenderer
    hierarchy: Hierarchy
    levels: int

    def item(self, item_id: int) -> ItemInfo:
        return self.items[int(item_id)]


def build_context(items: pl.DataFrame, sid_table: pl.DataFrame, hierarchy: pl.DataFrame,
                  prompts: PromptConfig) -> CorpusContext:
    """Index the catalog: item infos, SID codes, the prompt renderer and the prefix summaries."""
    for name, table, cols in (("items", items, ("item_id", "title", "brand", "categories",
                                                "description")),
                              ("sid_table", sid_table, ("item_id", "codes"))):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"teacher corpus: {name} lacks columns {missing}")
    lengths = sid_table["codes"].list.len().unique().to_list()
    if len(lengths) != 1:
        raise ValueError(f"teacher corpus: sid_table has SIDs of lengths {sorted(lengths)}")
    levels = int(lengths[0])
    codes = {int(i): tuple(int(c) for c in cs)
             for i, cs in zip(sid_table["item_id"], sid_table["codes"])}
    infos = {int(r["item_id"]): ItemInfo.from_row(r) for r in items.iter_rows(named=True)}
    no_sid = sorted(set(infos) - set(codes))
    no_item = sorted(set(codes) - set(infos))
    if no_item:
        raise ValueError(f"teacher corpus: sid_table items {no_item[:10]} are not in the items "
                         f"table ({len(no_item)} in all); rebuild the SID catalog")
    if no_sid:
        log.warning("teacher corpus: %d items have no SID and are left out (e.g. %s)",
                    len(no_sid), no_sid[:5])
        infos = {i: v for i, v in infos.items() if i in codes}
    renderer = PromptRenderer(prompts, {i: format_sid(c) for i, c in codes.items()},
                              {i: v.title for i, v in infos.items()})
    return CorpusContext(infos, codes, renderer, Hierarchy.from_table(hierarchy, levels), levels)


def split_samples(samples: pl.DataFrame, split: str, ctx: CorpusContext) -> pl.DataFrame:
    """The ``split`` rows (train or valid only), sorted by sample_id, items checked."""
    if split not in SPLITS:
        raise ValueError(f"teacher corpus uses only {SPLITS} samples, asked for {split!r}")
    missing = [c for c in ("sample_id", "history", "target", "split") if c not in samples.columns]
    if missing:
        raise ValueError(f"teacher corpus: samples lack columns {missing}")
    rows = samples.filter(pl.col("split") == split).sort("sample_id")
    known = pl.Series(sorted(ctx.codes), dtype=pl.Int64)
    bad = rows.filter(
        ~pl.col("target").is_in(known.implode())
        | ~pl.col("history").list.eval(pl.element().is_in(known.implode())).list.all()
    )
    if bad.height:
        raise ValueError(f"teacher corpus: {bad.height} {split} samples reference items without "
                         f"a SID, e.g. sample_id {bad['sample_id'].head(5).to_list()}; rebuild "
                         "the SID catalog from the current items")
    return rows


def choose(n: int, cap: int, seed: int, salt: str) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` of size ``min(n, cap)``."""
    if cap >= n:
        return np.arange(n)
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode("utf-8"))])
    return np.sort(rng.choice(n, size=cap, replace=False))


class _Rows:
    """Collects corpus rows and the counts of what was kept, skipped or rejected."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = {c: [] for c in CORPUS_SCHEMA}
        self.counts: dict[str, Counter] = {}
        self.selected: dict[str, Counter] = {}
        self.skipped: dict[str, Counter] = {}
        self.rejected: dict[str, dict[str, Counter]] = {}

    def add(self, task: str, prompt: str, response: str, split: str, source_id: int) -> None:
        for col, v in zip(CORPUS_SCHEMA, (task, prompt, response, split, int(source_id))):
            self.rows[col].append(v)
        self.counts.setdefault(task, Counter())[split] += 1

    def select(self, task: str, split: str, n: int) -> None:
        self.selected.setdefault(task, Counter())[split] += n

    def skip(self, task: str, reason: str, n: int = 1) -> None:
        if n:
            self.skipped.setdefault(task, Counter())[reason] += n

    def reject(self, task: str, split: str, reason: str) -> None:
        self.rejected.setdefault(task, {}).setdefault(split, Counter())[reason] += 1

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=CORPUS_SCHEMA)

    def stats(self, teacher: Teacher, **extra: Any) -> dict[str, Any]:
        return {
            "counts": {t: dict(c) for t, c in self.counts.items()},
            "selected": {t: dict(c) for t, c in self.selected.items()},
            "skipped": {t: dict(c) for t, c in self.skipped.items()},
            "rejected": {t: {s: dict(c) for s, c in v.items()} for t, v in self.rejected.items()},
            "teacher": {**teacher.describe(), **teacher.stats.to_dict()},
            **extra,
        }


def _draw(frame: pl.DataFrame, cap: int, seed: int, salt: str) -> pl.DataFrame:
    return frame[choose(frame.height, cap, seed, salt).tolist()] if frame.height else frame


def _item_tasks(ctx: CorpusContext, valid: pl.DataFrame, teacher: Teacher,
                cfg: TeacherCorpusConfig, out: _Rows) -> dict[str, int]:
    pools = {"train": sorted(ctx.items),
             "valid": sorted({int(t) for t in valid["target"]})}
    overlap: dict[str, int] = {}
    r = ctx.renderer
    for task in [t for t in cfg.alignment.tasks if t in ("title_to_sid", "sid_to_title",
                                                          "sid_to_description")]:
        chosen: dict[str, list[int]] = {}
        for split in SPLITS:
            pool = pools[split]
            if task != "sid_to_description":  # a title task needs a title: leave out, count
                titled = [i for i in pool if r.title(i)]
                out.skip(task, "empty_title", len(pool) - len(titled))
                pool = titled
            idx = choose(len(pool), cfg.alignment.cap(task, split), cfg.seed, f"{task}:{split}")
            chosen[split] = [pool[i] for i in idx]
            out.select(task, split, len(chosen[split]))
        overlap[task] = len(set(chosen["train"]) & set(chosen["valid"]))
        if task == "sid_to_description":
            flat = [(s, i) for s in SPLITS for i in chosen[s]]
            outcomes = teacher.describe_items([ctx.item(i) for _, i in flat])
            for (split, item), o in zip(flat, outcomes):
                if o.ok:
                    out.add(task, r.prompt(task, item=item), o.value, split, item)
                else:
                    out.reject(task, split, o.error)
            continue
        for split in SPLITS:
            for item in chosen[split]:
                if task == "title_to_sid":
                    out.add(task, r.prompt(task, item=item), r.sid(item), split, item)
                else:
                    out.add(task, r.prompt(task, item=item), r.title(item), split, item)
    return overlap


def _sequence_tasks(ctx: CorpusContext, frames: dict[str, pl.DataFrame], teacher: Teacher,
                    cfg: TeacherCorpusConfig, out: _Rows) -> None:
    r = ctx.renderer
    for task in [t for t in cfg.alignment.tasks if t in ("seq_sid", "seq_title", "titles_to_sid",
                                                          "user_narrative")]:
        pools = dict(frames)
        if task == "seq_title":  # the response is the target's title: it must have one
            for s in SPLITS:
                titled = pools[s].filter(pl.col("target").map_elements(
                    lambda t: bool(r.title(t)), return_dtype=pl.Boolean))
                out.skip(task, "empty_title", pools[s].height - titled.height)
                pools[s] = titled
        drawn = {s: _draw(pools[s], cfg.alignment.cap(task, s), cfg.seed, f"{task}:{s}")
                 for s in SPLITS}
        for split in SPLITS:
            out.select(task, split, drawn[split].height)
        if task == "user_narrative":
            flat = [(s, row) for s in SPLITS for row in drawn[s].iter_rows(named=True)]
            outcomes = teacher.narrate_users([[ctx.item(i) for i in row["history"]]
                                              for _, row in flat])
            for (split, row), o in zip(flat, outcomes):
                if o.ok:
                    out.add(task, r.prompt(task, history=row["history"]), o.value, split,
                            row["sample_id"])
                else:
                    out.reject(task, split, o.error)
            continue
        for split in SPLITS:
            for row in drawn[split].iter_rows(named=True):
                prompt = r.prompt(task, history=row["history"])
                if task == "seq_title":
                    out.add(task, prompt, r.title(row["target"]), split, row["sample_id"])
                else:
                    out.add(task, prompt, r.sid(row["target"]), split, row["sample_id"])


def _all_position_tasks(ctx: CorpusContext, samples: pl.DataFrame, frames: dict[str, pl.DataFrame],
                        cfg: TeacherCorpusConfig, out: _Rows) -> None:
    """``sid_sequence``: train rows are windows of the users' train sequences (prompt = the
    window's context items, response = its target items, each predicted from those before it);
    valid rows are single-target valid samples, spelled exactly as decoding prompts them."""
    r, a = ctx.renderer, cfg.alignment
    for task in [t for t in a.tasks if t in ALL_POSITION_TASKS]:
        chunks = windows(user_sequences(samples, "train").items, a.sequence_window,
                         a.sequence_stride)
        if chunks:
            continuation_check(r, task, chunks[0][0])
        picked = choose(len(chunks), a.cap(task, "train"), cfg.seed, f"{task}:train")
        out.select(task, "train", len(picked))
        for n, idx in enumerate(picked):
            items, first = chunks[int(idx)]
            out.add(task, r.prompt(task, history=items[:first]), r.spell(items[first:]),
                    "train", n)
        valid = _draw(frames["valid"], a.cap(task, "valid"), cfg.seed, f"{task}:valid")
        out.select(task, "valid", valid.height)
        for row in valid.iter_rows(named=True):
            out.add(task, r.prompt(task, history=row["history"]), r.sid(row["target"]), "valid",
                    row["sample_id"])


def build_alignment_corpus(ctx: CorpusContext, samples: pl.DataFrame, teacher: Teacher,
                           cfg: TeacherCorpusConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The stage-1 multi-task corpus and its stats."""
    frames = {s: split_samples(samples, s, ctx) for s in SPLITS}
    out = _Rows()
    overlap = _item_tasks(ctx, frames["valid"], teacher, cfg, out)
    _sequence_tasks(ctx, frames, teacher, cfg, out)
    _all_position_tasks(ctx, samples, frames, cfg, out)
    corpus = out.frame()
    log.info("alignment corpus: %d rows %s", corpus.height,
             {t: dict(c) for t, c in out.counts.items()})
    return corpus, out.stats(teacher, valid_items_also_in_train=overlap,
                             samples_available={s: frames[s].height for s in SPLITS})


def reasoning_requests(ctx: CorpusContext, frame: pl.DataFrame) -> list[ReasoningRequest]:
    """One request per sample row (history oldest first, target, its SID and prefixes)."""
    reqs = []
    for row in frame.iter_rows(named=True):
        codes = ctx.codes[int(row["target"])]
        reqs.append(ReasoningRequest(
            key=int(row["sample_id"]),
            history=tuple(ctx.item(i) for i in row["history"]),
            target=ctx.item(row["target"]),
            codes=codes,
            hierarchy=ctx.hierarchy.summaries(codes),
            history_codes=tuple(ctx.codes[int(i)] for i in row["history"]),
            history_hierarchy=tuple(ctx.hierarchy.summaries(ctx.codes[int(i)])
                                    for i in row["history"]),
        ))
    return reqs


def build_reasoning_corpus(ctx: CorpusContext, samples: pl.DataFrame, teacher: Teacher,
                           cfg: TeacherCorpusConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The stage-2 corpus: step-aligned responses for train (and valid) samples."""
    out = _Rows()
    frames = {s: split_samples(samples, s, ctx) for s in SPLITS}
    if cfg.reasoning.enabled:
        caps = {"train": cfg.reasoning.max_train, "valid": cfg.reasoning.max_valid}
        drawn = {s: _draw(frames[s], caps[s], cfg.seed, f"{REASONING_TASK}:{s}") for s in SPLITS}
        flat: list[tuple[str, dict]] = []
        for split in SPLITS:
            out.select(REASONING_TASK, split, drawn[split].height)
            flat += [(split, row) for row in drawn[split].iter_rows(named=True)]
        reqs = reasoning_requests(ctx, pl.concat([drawn[s] for s in SPLITS]))
        outcomes: Sequence[Outcome] = teacher.reason_steps_batch(reqs)
        for (split, row), req, o in zip(flat, reqs, outcomes):
            if not o.ok:
                out.reject(REASONING_TASK, split, o.error)
                continue
            try:
                response = render_steps(o.value, req.codes)
            except LayoutError:
                out.reject(REASONING_TASK, split, "layout_error")
                continue
            prompt = ctx.renderer.prompt(REASONING_TASK, history=row["history"])
            out.add(REASONING_TASK, prompt, response, split, row["sample_id"])
    corpus = out.frame()
    log.info("reasoning corpus: %d rows %s", corpus.height,
             {t: dict(c) for t, c in out.counts.items()})
    return corpus, out.stats(teacher, samples_available={s: frames[s].height for s in SPLITS})
