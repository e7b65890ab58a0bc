"""Reader for Amazon Reviews 2023 (Hou et al. 2024) review + metadata JSON-lines files.

Reviews: ``rating, title, text, images, asin, parent_asin, user_id, timestamp (ms),
helpful_vote, verified_purchase``. Only ``user_id``, ``parent_asin``, ``timestamp`` (required)
and ``rating`` are read; the item key is ``parent_asin`` and timestamps become unix seconds
(floor of ms / 1000). ``seq`` and ``line`` are the 1-based line number.

Metadata: ``parent_asin`` (required; a line without it is a ``missing_field`` reject),
``title``, ``main_category``, ``categories`` (path list), ``description`` (list, joined with
" "), ``store``, ``details`` (dict). ``brand`` = ``store``, or ``details["Brand"]`` when the
store is null or blank. ``categories`` falls back to ``[main_category]`` when the path is
empty. Items with a missing or blank title are kept with ``title`` null (the processing step
drops and counts them as "item_without_title"). A repeated ``parent_asin`` keeps the first line;
later ones are ``duplicate_item`` rejects. Both files may be gzip-compressed.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sapo_pipeline.data.readers._amazon import amazon_files, read_amazon_pair
from sapo_pipeline.data.readers.jsonl import FieldSpec
from sapo_pipeline.data.readers.registry import register
from sapo_pipeline.data.schema import RawSource

_STR_LIST = pl.List(pl.Utf8)

REVIEW_SPECS = [
    FieldSpec("user_id", required=True),
    FieldSpec("asin", path=("parent_asin",), required=True),
    FieldSpec("timestamp", pl.Int64, required=True),
    FieldSpec("rating", pl.Float64),
]

META_SPECS = [
    FieldSpec("asin", path=("parent_asin",), required=True),
    FieldSpec("title"),
    FieldSpec("main_category"),
    FieldSpec("categories", _STR_LIST),
    FieldSpec("description", _STR_LIST, scalar_ok=True),
    FieldSpec("details_brand", path=("details", "Brand")),
    FieldSpec("brand", path=("store",), fallback="details_brand"),
]


@register("amazon2023", amazon_files("amazon2023"))
def read_amazon2023(reviews_path: str | Path, meta_path: str | Path) -> RawSource:
    """Read ``<Category>.jsonl[.gz]`` and ``meta_<Category>.jsonl[.gz]`` (Amazon Reviews 2023)."""
    return read_amazon_pair(
        reviews_path,
        meta_path,
        review_specs=REVIEW_SPECS,
        meta_specs=META_SPECS,
        key_field="parent_asin",
        ts_divisor=1000,
        release="2023",
    )
