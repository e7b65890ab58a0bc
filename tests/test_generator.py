"""Tests for the seeded synthetic Amazon-2023-format generator (sapo_pipeline.data.generator)."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sapo_pipeline.data import generator as gen
from sapo_pipeline.data.generator import (
    MANIFEST_NAME,
    GeneratorConfig,
    generate_amazon2023,
    generate_if_needed,
)
from sapo_pipeline.data.generator_behaviour import simulate
from sapo_pipeline.data.generator_catalog import build_catalog

REVIEW_KEYS = ["rating", "title", "text", "images", "asin", "parent_asin", "user_id",
               "timestamp", "helpful_vote", "verified_purchase"]
META_KEYS = ["main_category", "title", "average_rating", "rating_number", "features",
             "description", "price", "images", "videos", "store", "categories", "details",
             "parent_asin", "bought_together"]
SMALL = {"n_users": 300, "n_items": 400}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def default_data(tmp_path_factory):
    """The default config (3000 users, 2000 items), generated once for the module."""
    out = tmp_path_factory.mktemp("default")
    cfg = GeneratorConfig()
    manifest = generate_amazon2023(out, cfg)
    reviews = _read(out / cfg.reviews_file)
    meta = _read(out / cfg.meta_file)
    return out, cfg, manifest, reviews, meta


def _sequences(reviews, meta):
    """Per user, time-ordered list of (parent_asin, top category, sub-type)."""
    path = {m["parent_asin"]: m["categories"] for m in meta}
    by_user = collections.defaultdict(list)
    for r in reviews:
        by_user[r["user_id"]].append((r["timestamp"], r["parent_asin"]))
    return [[(a, *path[a][1:]) for _, a in sorted(v)] for _, v in sorted(by_user.items())]


# ---- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"n_users": 0}, "n_users"),
    ({"n_items": 2.5}, "n_items"),
    ({"scale": 0}, "scale"),
    ({"category": "bad/name"}, "category"),
    ({"stay_prob": 0.8, "complement_prob": 0.3}, "complement_prob"),
    ({"defect_rate": 0.9}, "defect_rate"),
    ({"end_date": "2016-01-01"}, "end_date"),
    ({"min_reviews_per_user": 10, "mean_reviews_per_user": 5.0}, "mean_reviews_per_user"),
    ({"n_items": 100}, "n_items"),  # fewer than min_items_per_subtype * 48 sub-types
])
def test_config_rejects_bad_values_naming_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GeneratorConfig(**kwargs)


def test_config_fields_all_have_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(GeneratorConfig))


# ---- determinism, manifest, atomicity ------------------------------------------------------------

def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path):
    cfg = GeneratorConfig(**SMALL, defect_rate=0.02)
    m1 = generate_amazon2023(tmp_path / "a", cfg)
    m2 = generate_amazon2023(tmp_path / "b", cfg)
    m3 = generate_amazon2023(tmp_path / "c", GeneratorConfig(**SMALL, defect_rate=0.02, seed=1))
    for key in ("reviews", "meta"):
        name = m1["files"][key]["name"]
        assert _sha(tmp_path / "a" / name) == _sha(tmp_path / "b" / name)
        assert m1["files"][key]["sha256"] == m2["files"][key]["sha256"]
        assert m3["files"][key]["sha256"] != m1["files"][key]["sha256"]
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (tmp_path / "b" / MANIFEST_NAME).read_bytes()


def test_manifest_describes_the_files(default_data):
    out, cfg, manifest, reviews, meta = default_data
    assert manifest["config"] == asdict(cfg)
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest
    for key, rows in (("reviews", reviews), ("meta", meta)):
        info = manifest["files"][key]
        path = out / info["name"]
        assert info["bytes"] == path.stat().st_size
        assert info["sha256"] == _sha(path)
        assert info["lines"] == len(rows)
    assert manifest["files"]["reviews"]["name"] == "Synthetic_Products.jsonl"
    assert manifest["files"]["meta"]["name"] == "meta_Synthetic_Products.jsonl"
    assert manifest["rows"]["reviews"] == len(reviews)
    assert manifest["rows"]["items"] == len(meta) == 2000
    assert manifest["rows"]["users"] == len({r["user_id"] for r in reviews}) == 3000
    assert all(v == 0 for v in manifest["defects"]["reviews"].values())
    assert manifest["defects"]["meta"] == {"empty_title": 0}
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    def chunks():
        yield b"partial\n"
        raise RuntimeError("interrupted")

    from sapo_pipeline.io_utils import sha256_file, write_chunks_atomically

    with pytest.raises(RuntimeError):
        write_chunks_atomically(tmp_path / "x.jsonl", chunks())
    assert list(tmp_path.iterdir()) == []
    info = write_chunks_atomically(tmp_path / "x.jsonl", iter([b"a\n", b"bc\n"]))
    assert info == {"bytes": 5, "sha256": sha256_file(tmp_path / "x.jsonl"), "lines": 2}
    assert (tmp_path / "x.jsonl").read_bytes() == b"a\nbc\n" and len(list(tmp_path.iterdir())) == 1


# ---- format --------------------------------------------------------------------------------------

def test_review_lines_have_the_2023_fields_and_types(default_data):
    out, cfg, _, reviews, meta = default_data
    asins = {m["parent_asin"] for m in meta}
    lo = datetime(2016, 10, 1, tzinfo=UTC).timestamp() * 1000
    hi = datetime(2018, 11, 1, tzinfo=UTC).timestamp() * 1000
    for r in reviews:
        assert list(r) == REVIEW_KEYS
        assert type(r["rating"]) is float and 1.0 <= r["rating"] <= 5.0
        assert isinstance(r["title"], str) and r["title"] and isinstance(r["text"], str)
        assert r["images"] == []
        assert isinstance(r["asin"], str) and len(r["asin"]) == 10
        assert r["parent_asin"] in asins
        assert isinstance(r["user_id"], str) and len(r["user_id"]) == 28
        assert type(r["timestamp"]) is int and lo <= r["timestamp"] < hi
        assert type(r["helpful_vote"]) is int and r["helpful_vote"] >= 0
        assert type(r["verified_purchase"]) is bool
    # the fast writer is byte-identical to json.dumps with the fixed key order
    raw = (out / cfg.reviews_file).read_text(encoding="utf-8").splitlines()
    assert all(json.dumps(r) == line for r, line in zip(reviews, raw))
    ratings = collections.Counter(r["rating"] for r in reviews)
    assert ratings[5.0] == max(ratings.values()) and set(ratings) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_meta_lines_have_the_2023_fields_and_consistent_ratings(default_data):
    _, cfg, _, reviews, meta = default_data
    per_item = collections.defaultdict(list)
    for r in reviews:
        per_item[r["parent_asin"]].append(r["rating"])
    for m in meta:
        assert list(m) == META_KEYS
        assert m["main_category"] == cfg.category
        assert isinstance(m["title"], str) and m["title"]
        assert all(isinstance(x, str) for x in m["features"] + m["description"])
        assert m["price"] is None or (type(m["price"]) is float and m["price"] > 0)
        assert m["images"] == [] and m["videos"] == [] and m["bought_together"] is None
        assert m["details"]["Brand"] == m["store"]
        assert len(m["categories"]) == 3 and m["categories"][0] == cfg.category
        got = per_item.get(m["parent_asin"], [])
        assert m["rating_number"] == len(got)
        if got:
            assert m["average_rating"] == pytest.approx(round(sum(got) / len(got), 1))
    assert len({m["parent_asin"] for m in meta}) == len(meta)
    assert len({m["title"] for m in meta}) == len(meta)  # titles are unique


# ---- structure -----------------------------------------------------------------------------------

def test_category_tree_items_and_brands(default_data):
    _, cfg, _, _, meta = default_data
    subs = collections.Counter(tuple(m["categories"][1:]) for m in meta)
    assert len({c for c, _ in subs}) == cfg.n_top_categories
    assert len(subs) == cfg.n_top_categories * cfg.subtypes_per_category
    assert len({s for _, s in subs}) == len(subs)  # a sub-type sits under one top category
    assert min(subs.values()) >= cfg.min_items_per_subtype
    brand_cats = collections.defaultdict(set)
    brand_per_sub = collections.defaultdict(set)
    for m in meta:
        brand_cats[m["store"]].add(m["categories"][1])
        brand_per_sub[m["categories"][2]].add(m["store"])
    assert all(len(c) == 1 for c in brand_cats.values())  # brands tied to one top category
    assert max(len(b) for b in brand_per_sub.values()) <= cfg.brands_per_subtype


def test_titles_share_subtype_then_category_vocabulary(default_data):
    *_, meta = default_data
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer().fit_transform([m["title"] for m in meta])
    sim = (x @ x.T).toarray()
    np.fill_diagonal(sim, np.nan)
    sub = np.array([m["categories"][2] for m in meta])
    cat = np.array([m["categories"][1] for m in meta])
    same_sub, same_cat = sub[:, None] == sub[None, :], cat[:, None] == cat[None, :]
    within = np.nanmean(sim[same_sub])
    sibling = np.nanmean(sim[same_cat & ~same_sub])
    other = np.nanmean(sim[~same_cat])
    # measured (seed 0): 0.42 > 0.056 > 0.015; nearest neighbour same sub-type 99.9%
    assert within > 4 * sibling and sibling > 2 * other
    nn = np.nanargmax(sim, axis=1)
    assert (sub[nn] == sub).mean() > 0.95
    # every item title of a sub-type contains the same head noun
    cfg = GeneratorConfig()
    cat_obj = build_catalog(cfg, np.random.default_rng(np.random.SeedSequence(0).spawn(5)[0]))
    by_title = {m["title"]: m["categories"][2] for m in meta}
    for i, title in enumerate(cat_obj.item_title):
        s = int(cat_obj.item_subtype[i])
        assert cat_obj.subtype_head[s] in title and by_title[title] == cat_obj.subtype_names[s]


# ---- users and learnability ----------------------------------------------------------------------

def test_users_sizes_timestamps_and_5core(default_data):
    _, _, manifest, reviews, _ = default_data
    assert 40_000 <= len(reviews) <= 60_000  # measured 47,563
    by_user = collections.defaultdict(list)
    for r in reviews:
        by_user[r["user_id"]].append((r["timestamp"], r["parent_asin"]))
    assert min(len(v) for v in by_user.values()) >= 5
    for v in by_user.values():
        ts = sorted(t for t, _ in v)
        assert len(set(ts)) == len(ts)  # strictly increasing per user
        assert len({a for _, a in v}) == len(v)  # no repeated (user, item) pair
    assert manifest["rows"]["repeat_user_item_pairs"] == 0
    # iterative 5-core keeps most reviews (measured 98.4%)
    pairs = {(r["user_id"], r["parent_asin"]) for r in reviews}
    while True:
        uc = collections.Counter(u for u, _ in pairs)
        ic = collections.Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if uc[u] >= 5 and ic[i] >= 5}
        if kept == pairs:
            break
        pairs = kept
    assert len(pairs) >= 0.95 * len(reviews)


def test_next_subtype_and_item_are_predictable_beyond_popularity(default_data):
    *_, reviews, meta = default_data
    seqs = _sequences(reviews, meta)
    fit, held = seqs[: len(seqs) // 2], seqs[len(seqs) // 2:]
    sub_pop, item_pop = collections.Counter(), collections.Counter()
    comp = collections.defaultdict(collections.Counter)
    for q in fit:
        for (_, _, a), (item, _, b) in itertools.pairwise(q):
            sub_pop[b] += 1
            item_pop[item] += 1
            if a != b:
                comp[a][b] += 1
    top_sub = sub_pop.most_common(1)[0][0]
    n = hit_rule = hit_pop = 0
    for q in held:
        for (_, _, a), (_, _, b) in itertools.pairwise(q):
            n += 1
            hit_rule += b in (a, comp[a].most_common(1)[0][0])
            hit_pop += b == top_sub
    # measured (seed 0): rule 0.805, most-popular sub-type 0.034
    assert hit_rule / n > 0.7 and hit_rule / n - hit_pop / n > 0.6

    # item level, leave-last-out HR@10: popular items of the last item's sub-type vs global
    sub_of = {m["parent_asin"]: m["categories"][2] for m in meta}
    by_sub = collections.defaultdict(collections.Counter)
    for a, c in item_pop.items():
        by_sub[sub_of[a]][a] = c
    top10 = {a for a, _ in item_pop.most_common(10)}
    h_pop = h_sub = 0
    for q in held:
        hist, target = [x[0] for x in q[:-1]], q[-1][0]
        h_pop += target in top10
        cand = [a for a, _ in by_sub[sub_of[hist[-1]]].most_common(40) if a not in hist][:10]
        h_sub += target in cand
    # measured (seed 0): 0.377 vs 0.053
    assert h_sub > 3 * h_pop and h_sub / len(held) > 0.25


def test_preferences_are_sparse_without_drift_and_drift_widens_them():
    def distinct_categories(drift: float) -> np.ndarray:
        cfg = GeneratorConfig(**SMALL, complement_prob=0.0, drift_prob=drift)
        seeds = np.random.SeedSequence(0).spawn(5)
        cat = build_catalog(cfg, np.random.default_rng(seeds[0]))
        inter = simulate(cfg, cat, np.random.default_rng(seeds[1]))
        cats = cat.subtype_category[cat.item_subtype[inter.item]]
        return np.array([len(np.unique(cats[inter.user == u])) for u in range(cfg.total_users)])

    still, drifting = distinct_categories(0.0), distinct_categories(0.3)
    assert still.max() <= GeneratorConfig().preferred_categories
    assert drifting.mean() > still.mean() + 1.0


# ---- defects -------------------------------------------------------------------------------------

def _classify(raw: bytes, seen: set[bytes]) -> str | None:
    """A minimal independent reader: the reason a line would be rejected, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "non_utf8"
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return "malformed_json"
    if any(k not in rec for k in ("user_id", "parent_asin", "timestamp")):
        return "missing_field"
    if type(rec["timestamp"]) is not int or type(rec["rating"]) is not float:
        return "wrong_type"
    if raw in seen:
        return "duplicate_review"
    seen.add(raw)
    return None


def test_defects_are_injected_as_recorded(tmp_path):
    cfg = GeneratorConfig(**SMALL, defect_rate=0.05)
    manifest = generate_amazon2023(tmp_path / "bad", cfg)
    clean = generate_amazon2023(tmp_path / "clean", GeneratorConfig(**SMALL))
    lines = (tmp_path / "bad" / cfg.reviews_file).read_bytes().split(b"\n")[:-1]
    found = collections.defaultdict(list)
    seen: set[bytes] = set()
    for no, raw in enumerate(lines, start=1):
        reason = _classify(raw, seen)
        if reason:
            found[reason].append(no)
    expected = manifest["defect_lines"]["reviews"]
    assert dict(found) == {k: v for k, v in expected.items() if v}
    counts = manifest["defects"]["reviews"]
    assert sum(counts.values()) == round(0.05 * clean["rows"]["reviews"])
    assert min(counts.values()) >= 1 and max(counts.values()) - min(counts.values()) <= 1
    assert len(lines) == clean["rows"]["reviews"] + counts["duplicate_review"]
    fields = manifest["defect_fields"]
    assert sum(fields["missing_field"].values()) == counts["missing_field"]
    assert sum(fields["wrong_type"].values()) == counts["wrong_type"]

    # apart from the injected lines, the file is the clean file
    dups = set(expected["duplicate_review"])
    corrupt = {n for k, v in expected.items() if k != "duplicate_review" for n in v}
    ok = [raw for no, raw in enumerate(lines, start=1) if no not in dups]
    clean_lines = (tmp_path / "clean" / cfg.reviews_file).read_bytes().split(b"\n")[:-1]
    keep = [no for no in range(1, len(lines) + 1) if no not in dups]
    assert len(ok) == len(clean_lines)
    assert all(a == b for no, a, b in zip(keep, ok, clean_lines) if no not in corrupt)

    meta = _read(tmp_path / "bad" / cfg.meta_file)
    empty = [i for i, m in enumerate(meta, start=1) if m["title"] == ""]
    assert empty == manifest["defect_lines"]["meta"]["empty_title"]
    assert len(empty) == manifest["defects"]["meta"]["empty_title"] == round(0.05 * 400)


# ---- generate_if_needed and scale ----------------------------------------------------------------

def test_generate_if_needed_skips_only_when_config_and_hashes_match(tmp_path, monkeypatch):
    cfg = GeneratorConfig(**SMALL)
    first = generate_if_needed(tmp_path, cfg)
    calls = []
    real = gen.generate_amazon2023
    monkeypatch.setattr(gen, "generate_amazon2023", lambda d, c: calls.append(c) or real(d, c))

    assert generate_if_needed(tmp_path, cfg) == first and calls == []
    reviews = tmp_path / cfg.reviews_file
    reviews.write_bytes(reviews.read_bytes().replace(b"5.0", b"4.0", 1))  # same size, new hash
    assert generate_if_needed(tmp_path, cfg)["files"] == first["files"] and len(calls) == 1
    assert _sha(reviews) == first["files"]["reviews"]["sha256"]
    other = GeneratorConfig(**SMALL, seed=3)
    assert generate_if_needed(tmp_path, other)["config"]["seed"] == 3 and len(calls) == 2
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    generate_if_needed(tmp_path, other)
    assert len(calls) == 3


def test_scale_multiplies_users_items_and_reviews(tmp_path):
    one = generate_amazon2023(tmp_path / "x1", GeneratorConfig(**SMALL))
    two = generate_amazon2023(tmp_path / "x2", GeneratorConfig(**SMALL, scale=2.0))
    assert two["rows"]["users"] == 2 * one["rows"]["users"]
    assert two["rows"]["items"] == 2 * one["rows"]["items"]
    assert 1.8 < two["rows"]["reviews"] / one["rows"]["reviews"] < 2.2
