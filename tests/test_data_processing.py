"""Unit tests of the processing steps: dedupe, filters, k-core, windows, splits, accounting."""

from __future__ import annotations

import polars as pl
import pytest

from sapo_pipeline.config_utils import ConfigError, from_dict
from sapo_pipeline.data.accounting import AccountingError, Ledger
from sapo_pipeline.data.config import FilterConfig, IngestConfig, SplitConfig, to_epoch_seconds
from sapo_pipeline.data.ingest import build_samples, clean_source
from sapo_pipeline.data.processing import (
    dedupe_reviews,
    filter_items,
    filter_reviews,
    index_catalog,
    k_core,
    make_samples,
    split_counts,
    split_samples,
)
from sapo_pipeline.data.schema import (
    ITEM_SCHEMA,
    REJECT_SCHEMA,
    REVIEW_SCHEMA,
    SAMPLE_SCHEMA,
    RawSource,
    empty,
)


def reviews_frame(rows: list[tuple]) -> pl.DataFrame:
    """rows of (user, asin, timestamp); seq and line follow the list order."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "asin": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [5.0] * len(rows),
            "seq": list(range(1, len(rows) + 1)),
            "file": ["r.jsonl"] * len(rows),
            "line": list(range(1, len(rows) + 1)),
        },
        schema=REVIEW_SCHEMA,
    )


def items_frame(asins: list[str], titles: list[str | None] | None = None) -> pl.DataFrame:
    titles = titles or [f"title {a}" for a in asins]
    return pl.DataFrame(
        {
            "asin": asins,
            "title": titles,
            "brand": ["b"] * len(asins),
            "categories": [["c"]] * len(asins),
            "description": [""] * len(asins),
            "source_item_id": [None] * len(asins),
        },
        schema=ITEM_SCHEMA,
    )


def test_ledger_identity_and_error():
    ledger = Ledger("x", rows_in=10, kept=6)
    ledger.filter("rule", 3)
    ledger.reject("bad", 1)
    assert ledger.check().to_dict()["identity_holds"]
    ledger.kept = 5
    with pytest.raises(AccountingError, match="off by 1"):
        ledger.check()


def test_dedupe_keeps_first_and_rejects_repeats_with_line():
    reviews = reviews_frame([("u", "a", 1), ("u", "a", 1), ("u", "a", 2), ("v", "a", 1)])
    kept, rejects, ledger = dedupe_reviews(reviews)
    assert kept["line"].to_list() == [1, 3, 4]
    assert rejects["line"].to_list() == [2]
    assert rejects["reason"].to_list() == ["duplicate_review"]
    assert ledger.rejected == {"duplicate_review": 1} and ledger.kept == 3
    file = reviews["file"][0]
    assert rejects["detail"].to_list() == [
        f"repeats (user_id=u, asin=a, timestamp=1) of {file} line 1; kept the first"]
    assert kept.columns == reviews.columns


def test_dedupe_never_touches_order_only_rows():
    reviews = reviews_frame([("u", "a", None), ("u", "a", None)])
    kept, rejects, _ = dedupe_reviews(reviews)
    assert kept.height == 2 and rejects.height == 0


def test_filter_items_rules():
    items = items_frame(["a", "b", "c"], ["one two three", "  ", "one"])
    kept, removed = filter_items(items, FilterConfig(max_title_words=2))
    assert kept["asin"].to_list() == ["c"]
    assert removed["item_without_title"]["asin"].to_list() == ["b"]
    assert removed["title_too_long"]["asin"].to_list() == ["a"]


def test_k_core_is_iterative():
    # u1 has 2 items; with k=2, item c (only u2) goes, which drops u2 below 2, which drops b.
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u2", "b", 1), ("u2", "c", 2), ("u3", "a", 1), ("u3", "b", 2)]
    out = k_core(reviews_frame(rows), 2)
    assert sorted(out["user_id"].unique().to_list()) == ["u1", "u3"]
    assert set(out["asin"].to_list()) == {"a", "b"}
    assert k_core(reviews_frame(rows), 0).height == len(rows)


def test_filter_reviews_counts_every_rule():
    items = items_frame(["a", "b", "c"], ["x", None, "y"])
    kept_items, removed = filter_items(items, FilterConfig())
    rows = [("u", "a", 100), ("u", "b", 100), ("u", "z", 100), ("u", "c", 5), ("v", "a", 100)]
    cfg = FilterConfig(k_core=0, time_start=50)
    out, ledger = filter_reviews(reviews_frame(rows), kept_items, removed, cfg)
    assert out["asin"].to_list() == ["a", "a"]
    assert ledger.filtered["item_without_title"] == 1
    assert ledger.filtered["item_without_metadata"] == 1
    assert ledger.filtered["outside_time_window"] == 1
    assert ledger.check().kept == 2


def test_windows_histories_are_previous_n_items_in_time_order():
    # user u's file order differs from time order; ties in time keep file order.
    rows = [("u", "c", 30), ("u", "a", 10), ("u", "b", 20), ("u", "d", 30), ("v", "a", 5), ("v", "b", 6)]
    items = items_frame(["a", "b", "c", "d"])
    catalog, inter, dropped = index_catalog(items, reviews_frame(rows), keep_source_ids=False)
    assert dropped == 0 and catalog["item_id"].to_list() == [0, 1, 2, 3]
    samples = make_samples(inter, max_history=2).sort("user_id", "pos")
    u = samples.filter(pl.col("user_id") == "u")
    assert u["target"].to_list() == [1, 2, 3]  # b, c, d (c before d: same time, file order)
    assert u["history"].to_list() == [[0], [0, 1], [1, 2]]
    v = samples.filter(pl.col("user_id") == "v")
    assert v["history"].to_list() == [[0]] and v["target"].to_list() == [1]


def test_chronological_split_8_1_1_by_target_time():
    n = 20
    samples = pl.DataFrame(
        {
            "user_id": [f"u{i % 3}" for i in range(n)],
            "history": [[0]] * n,
            "target": list(range(n)),
            "timestamp": list(reversed(range(n))),  # later rows are earlier in time
            "pos": list(range(1, n + 1)),
        }
    )
    out = split_samples(samples, SplitConfig())
    assert out.schema == pl.Schema(SAMPLE_SCHEMA)
    assert split_counts(out) == {"train": 16, "valid": 2, "test": 2}
    train_max = out.filter(pl.col("split") == "train")["timestamp"].max()
    valid = out.filter(pl.col("split") == "valid")["timestamp"]
    test_min = out.filter(pl.col("split") == "test")["timestamp"].min()
    assert train_max <= valid.min() and valid.max() <= test_min
    assert out["sample_id"].to_list() == list(range(n))


def test_chronological_split_without_timestamps_is_a_clear_error():
    samples = pl.DataFrame(
        {"user_id": ["u"], "history": [[0]], "target": [1], "timestamp": [None], "pos": [1]},
        schema_overrides={"timestamp": pl.Int64},
    )
    with pytest.raises(ValueError, match="leave_one_out"):
        split_samples(samples, SplitConfig())


def test_leave_one_out_split():
    rows = [("u", a, None) for a in "abcd"] + [("v", a, None) for a in "ab"]
    catalog, inter, _ = index_catalog(items_frame(list("abcd")), reviews_frame(rows), False)
    out = split_samples(make_samples(inter, 10), SplitConfig(method="leave_one_out"))
    u = out.filter(pl.col("user_id") == "u")
    assert u["split"].to_list() == ["train", "valid", "test"] or sorted(u["split"].to_list()) == [
        "test", "train", "valid"]
    by_target = dict(zip(u["target"].to_list(), u["split"].to_list(), strict=True))
    assert by_target == {1: "train", 2: "valid", 3: "test"}
    assert out.filter(pl.col("user_id") == "v")["split"].to_list() == ["test"]


def test_clean_source_accounts_for_every_row():
    rows = [(f"u{u}", f"i{(u + k) % 6}", 100 * k + u) for u in range(8) for k in range(5)]
    rows.append(("u0", "i0", 0))  # a duplicate of ("u0", "i0", 0)
    rows.append(("u1", "nometa", 3))
    raw = RawSource(
        reviews=reviews_frame(rows),
        items=items_frame([f"i{k}" for k in range(6)] + ["untitled"], None).with_columns(
            title=pl.when(pl.col("asin") == "untitled").then(None).otherwise(pl.col("title"))
        ),
        rejects=pl.DataFrame(
            {"file": ["r.jsonl"], "line": [99], "field": [None], "reason": ["malformed_json"], "detail": ["{"]},
            schema=REJECT_SCHEMA,
        ),
    )
    cfg = from_dict(IngestConfig, {"filters": {"k_core": 5}})
    result = clean_source(raw, cfg)
    reviews_ledger = next(x for x in result.ledgers if x.step == "filter_reviews")
    dedupe_ledger = next(x for x in result.ledgers if x.step == "dedupe_reviews")
    assert dedupe_ledger.rejected == {"duplicate_review": 1}
    assert dedupe_ledger.kept == reviews_ledger.rows_in
    assert reviews_ledger.filtered["item_without_metadata"] == 1
    assert reviews_ledger.kept == result.interactions.height == 40
    assert set(result.rejects["reason"].to_list()) == {"malformed_json", "duplicate_review"}
    item_ledger = next(x for x in result.ledgers if x.step == "items")
    assert item_ledger.filtered["item_without_title"] == 1 and item_ledger.kept == 6
    samples = build_samples(result.interactions, result.items, None, cfg.split)
    assert samples.height == 40 - 8  # one sample per interaction after each user's first


def test_published_samples_keep_rows_and_rebuild_train_before_valid():
    items = items_frame(["0", "1", "2", "3"]).with_columns(source_item_id=pl.Series([0, 1, 2, 3]))
    published = pl.DataFrame(
        {
            "sample_id": [0, 1],
            "user_id": ["u", "u"],
            "history": [[0, 1, 2], [0, 1, 2, 3]],
            "target": [3, 0],
            "timestamp": [40, 50],
            "split": ["valid", "test"],
        },
        schema=SAMPLE_SCHEMA,
    )
    # The earliest published row's history, as the reader gives it: items 0, 1, 2 at t=10, 20, 45.
    reviews = reviews_frame([("u", "0", 10), ("u", "1", 20), ("u", "2", 45)])
    raw = RawSource(reviews=reviews, items=items, rejects=empty(REJECT_SCHEMA), published_samples=published)
    cfg = from_dict(IngestConfig, {"filters": {"k_core": 0, "drop_duplicate_reviews": False}})
    result = clean_source(raw, cfg)
    samples = build_samples(result.interactions, result.items, raw.published_samples, cfg.split)
    assert samples["split"].to_list() == ["train", "valid", "test"]
    train = samples.filter(pl.col("split") == "train")
    assert train["history"].to_list() == [[0]] and train["target"].to_list() == [1]  # 2 is at t=45 >= 40
    kept = samples.filter(pl.col("split") != "train").drop("sample_id")
    assert kept.equals(published.drop("sample_id"))


def test_config_errors_name_the_parameter():
    with pytest.raises(ConfigError, match=r"ingest\.filters: unknown parameter\(s\) \['k_cor'\]"):
        from_dict(IngestConfig, {"filters": {"k_cor": 5}}, "ingest")
    with pytest.raises(ConfigError, match="ratios"):
        from_dict(IngestConfig, {"split": {"ratios": [0.5, 0.5, 0.5]}}, "ingest")
    with pytest.raises(ConfigError, match="format"):
        from_dict(IngestConfig, {"source": {"format": "csv"}}, "ingest")
    assert to_epoch_seconds("2016-10") == 1475280000
    with pytest.raises(ValueError, match="cannot read time"):
        to_epoch_seconds("Oct 2016")
