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
from sapo_pipeline.data.schema import SAMPLE_SCHEMA, RawSource, empty
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


def read_raw_source(raw_manifest: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Parse the raw files into the canonical tables; bad rows go to ``read_rejects``."""
    cfg = load_section("ingest", params)
    category = cfg.generator.category if cfg.source.format == "synthetic" else None
    raw = open_source(cfg.source, category=category)
    log.info(
        "read %d reviews, %d items, %d rejected rows from %s",
        raw.reviews.height, raw.items.height, raw.rejects.height, raw_manifest["root"],
    )
    published = raw.published_samples if raw.published_samples is not None else empty(SAMPLE_SCHEMA)
    return {
        "parsed_reviews": raw.reviews,
        "parsed_items": raw.items,
        "published_samples": published,
        "read_rejects": raw.rejects,
        "read_summary": {
            "lines_read": raw.lines_read,
            "has_timestamps": raw.has_timestamps,
            "pre_split": raw.published_samples is not None,
            "notes": raw.notes,
            "line_files": _line_files(cfg.source.format, raw),
        },
    }


def _line_files(fmt: str, raw: RawSource) -> dict[str, list[str]] | None:
    """Files where one line is one review / one item (the Amazon dumps), for end-to-end totals."""
    if fmt not in ("synthetic", "amazon2023", "amazon2018"):
        return None
    reviews = sorted(raw.reviews["file"].unique().to_list())
    return {"reviews": reviews, "items": sorted(set(raw.lines_read) - set(reviews))}


def clean_interactions(
    parsed_reviews: pl.DataFrame,
    parsed_items: pl.DataFrame,
    published_samples: pl.DataFrame,
    read_rejects: pl.DataFrame,
    read_summary: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[dict]]:
    """Dedupe, filter (title, time window, k-core) and index the catalog."""
    cfg = load_section("ingest", params)
    raw = RawSource(
        reviews=parsed_reviews,
        items=parsed_items,
        rejects=read_rejects,
        published_samples=published_samples if read_summary["pre_split"] else None,
        has_timestamps=read_summary["has_timestamps"],
    )
    result = clean_source(raw, cfg)
    return result.items, result.interactions, result.rejects, [x.to_dict() for x in result.ledgers]


def make_split_samples(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    published_samples: pl.DataFrame,
    read_summary: dict[str, Any],
    params: dict[str, Any],
) -> pl.DataFrame:
    """Sliding-window (history -> next) samples with their train/valid/test split."""
    cfg = load_section("ingest", params)
    published = published_samples if read_summary["pre_split"] else None
    return build_samples(interactions, items, published, cfg.split)


def report_ingest(
    read_summary: dict[str, Any],
    clean_ledgers: list[dict],
    ingest_rejects: pl.DataFrame,
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    samples: pl.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Everything counted: lines read, kept, filtered by rule, rejected by reason, splits."""
    cfg = load_section("ingest", params)
    ledgers = [Ledger(**{k: v for k, v in d.items() if k != "identity_holds"}) for d in clean_ledgers]
    report = ingest_report(
        lines_read=read_summary["lines_read"],
        ledgers=ledgers,
        rejects=ingest_rejects,
        items=items,
        interactions=interactions,
        samples=samples,
        source=to_dict(cfg.source),
        notes=read_summary["notes"],
        published=cfg.split.train_cutoff if read_summary["pre_split"] else None,
        split_method=cfg.split.method,
        line_files=read_summary.get("line_files"),
    )
    log.info("ingest: %s samples %s", report["catalog"], report["samples"]["per_split"])
    return report


