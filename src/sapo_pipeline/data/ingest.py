"""The ingest steps composed: RawSource -> catalog, interactions, samples, rejects, report.

Two shapes of source are handled:

* interaction sources (Amazon 2023/2018 reviews, UniSRec and LC-Rec sequences): filters,
  k-core, sliding windows and a split are computed here;
* pre-split sources (MiniOneRec/D3 CSVs): valid and test rows are kept exactly as published;
  the train split, which is not public, is rebuilt from the (prefix -> next) pairs inside
  the published histories whose targets fall before the valid period (``split.train_cutoff``).
  Every number compared with a published one must say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from sapo_pipeline.data.accounting import Ledger
from sapo_pipeline.data.config import IngestConfig, SplitConfig
from sapo_pipeline.data.processing import (
    dedupe_reviews,
    filter_items,
    filter_reviews,
    finalize_samples,
    index_catalog,
    make_samples,
    split_counts,
    split_samples,
)
from sapo_pipeline.data.schema import REJECT_SCHEMA, RawSource

log = logging.getLogger(__name__)

TRAIN_RECONSTRUCTION_NOTE = (
    "train split reconstructed: the published train CSV is not public; train samples are the "
    "(prefix -> next) pairs inside the published valid/test histories whose target precedes "
    "the first {cutoff} target; valid and test rows are exactly as published"
)


@dataclass
class CleanResult:
    """Outputs of :func:`clean_source`."""

    items: pl.DataFrame
    interactions: pl.DataFrame
    rejects: pl.DataFrame
    ledgers: list[Ledger]


def clean_source(raw: RawSource, cfg: IngestConfig) -> CleanResult:
    """Dedupe, filter and index a parsed source; every row is kept, filtered or rejected."""
    reviews = raw.reviews
    rejects = [raw.rejects]
    ledgers: list[Ledger] = []
    if cfg.filters.drop_duplicate_reviews:
        reviews, dup_rejects, ledger = dedupe_reviews(reviews)
        rejects.append(dup_rejects)
        ledgers.append(ledger)

    items, removed = filter_items(raw.items, cfg.filters)
    interactions, ledger = filter_reviews(reviews, items, removed, cfg.filters)
    ledgers.append(ledger)

    pre_split = raw.published_samples is not None
    catalog, interactions, no_interactions = index_catalog(items, interactions, keep_source_ids=pre_split)
    item_ledger = Ledger("items", raw.items.height, kept=catalog.height)
    for rule, gone in removed.items():
        item_ledger.filter(rule, gone.height)
    item_ledger.filter("no_interactions_left", no_interactions)
    ledgers.append(item_ledger.check())
    if catalog.height == 0 or (interactions.height == 0 and not pre_split):
        raise ValueError(
            f"no items or interactions left after filtering ({cfg.source.path}): "
            f"{[ledger.to_dict() for ledger in ledgers]}"
        )
    log.info("catalog: %d items; %d interactions kept", catalog.height, interactions.height)
    return CleanResult(catalog, interactions, pl.concat(rejects).cast(REJECT_SCHEMA), ledgers)


def build_samples(
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    published: pl.DataFrame | None,
    cfg: SplitConfig,
) -> pl.DataFrame:
    """Sliding-window samples with their split (or the published split plus rebuilt train)."""
    windows = make_samples(interactions, cfg.max_history)
    if published is None:
        return split_samples(windows, cfg)
    return _published_with_train(windows, items, published, cfg)


def _published_with_train(
    windows: pl.DataFrame, items: pl.DataFrame, published: pl.DataFrame, cfg: SplitConfig
) -> pl.DataFrame:
    ids = set(items["item_id"].to_list())
    used = set(published["target"].to_list()) | set(published["history"].explode().drop_nulls().to_list())
    unknown = used - ids
    if unknown:
        raise ValueError(f"published samples use {len(unknown)} item ids missing from the catalog, "
                         f"e.g. {sorted(unknown)[:5]}")
    if published["timestamp"].null_count():
        raise ValueError(
            "rebuilding the train split needs the published rows' timestamps: point "
            "ingest.source.options.timestamps_dir at the row-aligned D3 copy"
        )
    cutoff = published.filter(pl.col("split") == cfg.train_cutoff)["timestamp"].min()
    train = (
        windows.filter(pl.col("timestamp") < cutoff)
        .sort(["timestamp", "user_id", "pos"])
        .with_columns(split=pl.lit("train"))
        .drop("pos")
    )
    log.info(TRAIN_RECONSTRUCTION_NOTE.format(cutoff=cfg.train_cutoff) + " (%d rows)", train.height)
    rows = published.filter(pl.col("split").is_in(["valid", "test"])).drop("sample_id")
    order = pl.col("split").replace_strict({"valid": 1, "test": 2})
    rows = rows.with_columns(_o=order).sort("_o", maintain_order=True).drop("_o")
    return finalize_samples(pl.concat([train.select(rows.columns), rows]))


def ingest_report(
    lines_read: dict[str, int],
    ledgers: list[Ledger],
    rejects: pl.DataFrame,
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    samples: pl.DataFrame,
    source: dict,
    notes: list[str],
    published: str | None,
    split_method: str,
    line_files: dict[str, list[str]] | None = None,
) -> dict:
    """The accounting of a whole ingest run, JSON-serialisable.

    For line-per-row sources (``line_files`` names the review and meta files), ``totals``
    holds the end-to-end identities: lines read from the review files = interactions kept +
    filtered (by rule) + rejected (by reason, reader and dedupe), and likewise for item lines.
    """
    reasons = dict(rejects.group_by("reason").len().sort("reason").iter_rows()) if rejects.height else {}
    by_file = (
        {f"{f}:{r}": n for f, r, n in rejects.group_by("file", "reason").len().sort("file", "reason").iter_rows()}
        if rejects.height
        else {}
    )
    users = interactions["user_id"].n_unique() if interactions.height else 0
    hist_len = samples["history"].list.len()
    report = {
        "source": source,
        "lines_read": lines_read,
        "ledgers": [ledger.to_dict() for ledger in ledgers],
        "rejected_by_reason": reasons,
        "rejected_by_file_and_reason": by_file,
        "catalog": {"items": items.height},
        "interactions": {"rows": interactions.height, "users": users},
        "samples": {
            "total": samples.height,
            "per_split": split_counts(samples),
            "split_method": "published (valid/test) + reconstructed train" if published else split_method,
            "history_length_mean": float(hist_len.mean()) if samples.height else 0.0,
            "history_length_max": int(hist_len.max()) if samples.height else 0,
        },
        "notes": list(notes),
    }
    if line_files:
        report["totals"] = [x.to_dict() for x in end_to_end_ledgers(line_files, lines_read, ledgers, rejects)]
    if published:
        report["notes"].append(TRAIN_RECONSTRUCTION_NOTE.format(cutoff=published))
    return report


def end_to_end_ledgers(
    line_files: dict[str, list[str]], lines_read: dict[str, int], ledgers: list[Ledger], rejects: pl.DataFrame
) -> list[Ledger]:
    """Lines read -> kept, across reader, dedupe and filters, for reviews and for items.

    ``line_files`` maps "reviews" / "items" to the files whose every line is one row. Raises
    :class:`~sapo_pipeline.data.accounting.AccountingError` when a row went missing.
    """
    by_step = {ledger.step: ledger for ledger in ledgers}
    out = []
    for kind, step in (("reviews", "filter_reviews"), ("items", "items")):
        files = line_files.get(kind) or []
        if not files or step not in by_step:
            continue
        ledger = Ledger(f"{kind}_end_to_end", sum(lines_read.get(f, 0) for f in files))
        ledger.kept = by_step[step].kept
        for rule, n in by_step[step].filtered.items():
            ledger.filter(rule, n)
        ledger.reject_frame(rejects.filter(pl.col("file").is_in(files)))
        out.append(ledger.check())
    return out
