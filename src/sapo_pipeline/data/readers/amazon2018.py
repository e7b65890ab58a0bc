"""Reader for Amazon Review Data 2018 (Ni, Li, McAuley 2019) review + metadata JSON lines.

Reviews: ``reviewerID`` -> user_id, ``asin``, ``unixReviewTime`` (unix seconds) -> timestamp
(all three required), ``overall`` -> rating. Metadata: ``asin`` (required), ``title``,
``category`` (path list) -> categories, ``description`` (list, or a bare string) joined with
" ", ``brand``. Same core, quarantine rules, title handling and duplicate handling as the 2023
reader (a repeated meta ``asin`` keeps the first line, later ones are ``duplicate_item``).
Both files may be gzip-compressed.
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
    FieldSpec("user_id", path=("reviewerID",), required=True),
    FieldSpec("asin", required=True),
    FieldSpec("timestamp", pl.Int64, path=("unixReviewTime",), required=True),
    FieldSpec("rating", pl.Float64, path=("overall",)),
]

META_SPECS = [
    FieldSpec("asin", required=True),
    FieldSpec("title"),
    FieldSpec("categories", _STR_LIST, path=("category",)),
    FieldSpec("description", _STR_LIST, scalar_ok=True),
    FieldSpec("brand"),
]


@register("amazon2018", amazon_files("amazon2018"))
def read_amazon2018(reviews_path: str | Path, meta_path: str | Path) -> RawSource:
    """Read ``<Category>.json[.gz]`` and ``meta_<Category>.json[.gz]`` (Amazon 2018)."""
    return read_amazon_pair(
        reviews_path,
        meta_path,
        review_specs=REVIEW_SPECS,
        meta_specs=META_SPECS,
        key_field="asin",
        ts_divisor=1,
        release="2018",
    )
