"""Thin nodes of the ``teacher_corpus`` pipeline; the logic lives in ``sapo_pipeline.teacher``."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import to_dict
from sapo_pipeline.parameters import load_section
from sapo_pipeline.teacher.config import TeacherCorpusConfig
from sapo_pipeline.teacher.corpus import (
    build_alignment_corpus,
    build_context,
    build_reasoning_corpus,
)
from sapo_pipeline.teacher.factory import make_teacher
from sapo_pipeline.teacher.hierarchy import build_hierarchy as _build_hierarchy
from sapo_pipeline.teacher.report import teacher_report

log = logging.getLogger(__name__)


def _config(params: dict[str, Any]) -> TeacherCorpusConfig:
    return load_section("teacher_corpus", params)


def build_hierarchy(items: pl.DataFrame, sid_table: pl.DataFrame,
                    params: dict[str, Any]) -> pl.DataFrame:
    """Per SID prefix: the categories, brands and title words its items share."""
    cfg = _config(params)
    table = _build_hierarchy(items, sid_table, cfg.hierarchy)
    log.info("sid hierarchy: %d prefixes", table.height)
    return table


def _synthesize(builder, items, samples, sid_table, sid_hierarchy, params):
    cfg = _config(params)
    ctx = build_context(items, sid_table, sid_hierarchy, cfg.prompts)
    teacher = make_teacher(cfg.teacher, seed=cfg.seed, log_every=cfg.log_every)
    try:
        return builder(ctx, samples, teacher, cfg)
    finally:
        teacher.close()


def synthesize_alignment_corpus(items: pl.DataFrame, samples: pl.DataFrame,
                                sid_table: pl.DataFrame, sid_hierarchy: pl.DataFrame,
                                params: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Stage-1 multi-task corpus (train + valid rows) and its build stats."""
    return _synthesize(build_alignment_corpus, items, samples, sid_table, sid_hierarchy, params)


def synthesize_reasoning_corpus(items: pl.DataFrame, samples: pl.DataFrame,
                                sid_table: pl.DataFrame, sid_hierarchy: pl.DataFrame,
                                params: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Stage-2 step-aligned reasoning corpus (train + valid rows) and its build stats."""
    return _synthesize(build_reasoning_corpus, items, samples, sid_table, sid_hierarchy, params)


def report_teacher_corpus(alignment_corpus: pl.DataFrame, reasoning_corpus: pl.DataFrame,
                          teacher_alignment_stats: dict[str, Any],
                          teacher_reasoning_stats: dict[str, Any],
                          params: dict[str, Any]) -> dict[str, Any]:
    """Counts, rejections, teacher cost and length statistics of both corpora."""
    cfg = _config(params)
    report = teacher_report(alignment_corpus, reasoning_corpus, teacher_alignment_stats,
                            teacher_reasoning_stats, config=to_dict(cfg))
    log.info("teacher corpus: %d alignment rows, %d reasoning rows, teacher %s",
             report["alignment"]["rows"], report["reasoning"]["rows"], report["teacher_totals"])
    return report
