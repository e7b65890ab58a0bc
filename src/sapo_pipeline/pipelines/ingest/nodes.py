"""Thin nodes of the ``ingest`` pipeline; the logic lives in ``sapo_pipeline.data``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from sapo_pipeline.config_utils import to_dict
from sapo_pipeline.data.accounting import Ledger
from sapo_pipeline.data.generator import generate_if_needed
from sapo_pipeline.data.ingest import build_samples, clean_source, ingest_report
from sapo_pipeline.data.schema import RawSource
from sapo_pipeline.data.sources import inventory, open_source
from sapo_pipeline.parameters import load_section

log = logging.getLogger(__name__)


def prepare_raw_source(params: dict[str, Any]) -> dict[str, Any]:
    """Generate the synthetic default (if needed) or inventory the user's raw files."""
    cfg = load_section("ingest", params)
    root = Path(cfg.source.path)
    if cfg.source.format == "synthetic":
        generate_if_needed(root, cfg.generator)
    manifest = inventory(root)
    manifest["format"] = cfg.source.format
    log.info("raw source %s (%s): %d files", root, cfg.source.format, len(manifest["files"]))
    return manifest


def read_raw_source(raw_manifest: dict[str, Any], params: dict[str, Any]) -> RawSource:
    """Parse the raw files into the canonical tables; bad rows go to its ``rejects``."""
    cfg = load_section("ingest", params)
    category = cfg.generator.category if cfg.source.format == "synthetic" else None
    raw = open_source(cfg.source, category=category)
    log.info(
        "read %d reviews, %d items, %d rejected rows from %s",
        raw.reviews.height, raw.items.height, raw.rejects.height, raw_manifest["root"],
    )
    return raw


def clean_interactions(raw_source: RawSource, params: dict[str, Any]
                       ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[Ledger]]:
    """Dedupe, filter (title, time window, k-core) and index the catalog."""
    result = clean_source(raw_source, load_section("ingest", params))
    return result.items, result.interactions, result.rejects, list(result.ledgers)


def make_split_samples(interactions: pl.DataFrame, items: pl.DataFrame, raw_source: RawSource,
                       params: dict[str, Any]) -> pl.DataFrame:
    """Sliding-window (history -> next) samples with their train/valid/test split."""
    cfg = load_section("ingest", params)
    return build_samples(interactions, items, raw_source.published_samples, cfg.split)


def report_ingest(
    raw_source: RawSource,
    clean_ledgers: list[Ledger],
    ingest_rejects: pl.DataFrame,
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    samples: pl.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Everything counted: lines read, kept, filtered by rule, rejected by reason, splits."""
    cfg = load_section("ingest", params)
    report = ingest_report(
        lines_read=raw_source.lines_read,
        ledgers=clean_ledgers,
        rejects=ingest_rejects,
        items=items,
        interactions=interactions,
        samples=samples,
        source=to_dict(cfg.source),
        notes=raw_source.notes,
        published=cfg.split.train_cutoff if raw_source.published_samples is not None else None,
        split_method=cfg.split.method,
        line_files=raw_source.line_files,
    )
    log.info("ingest: %s samples %s", report["catalog"], report["samples"]["per_split"])
    return report


