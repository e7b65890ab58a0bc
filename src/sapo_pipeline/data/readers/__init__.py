"""Readers: one per source format, each returning a :class:`~sapo_pipeline.data.schema.RawSource`.

``read_source(fmt, **options)`` dispatches on the format name:

=============  ================================================================
``amazon2023``  ``read_amazon2023(reviews_path, meta_path)``
``amazon2018``  ``read_amazon2018(reviews_path, meta_path)``
``minionerec``  ``read_minionerec(split_dir, item_file=None, timestamps_dir=None, category=None)``
``unisrec``     ``read_unisrec(dir, name="Scientific")``
``lcrec``       ``read_lcrec(dir, name="Games", titles_tsv=None)``
=============  ================================================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from sapo_pipeline.data.readers.amazon2018 import read_amazon2018
from sapo_pipeline.data.readers.amazon2023 import read_amazon2023
from sapo_pipeline.data.readers.lcrec import read_lcrec
from sapo_pipeline.data.readers.minionerec import read_minionerec
from sapo_pipeline.data.readers.recbole import read_unisrec
from sapo_pipeline.data.schema import RawSource

READERS: dict[str, Callable[..., RawSource]] = {
    "amazon2023": read_amazon2023,
    "amazon2018": read_amazon2018,
    "minionerec": read_minionerec,
    "unisrec": read_unisrec,
    "lcrec": read_lcrec,
}


def read_source(fmt: str, **options: object) -> RawSource:
    """Read a source with the reader registered for ``fmt``; unknown formats raise ValueError."""
    try:
        reader = READERS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown source format {fmt!r}; known formats: {sorted(READERS)}"
        ) from None
    try:
        inspect.signature(reader).bind(**options)
    except TypeError as exc:
        raise TypeError(
            f"read_source({fmt!r}): {exc}; signature: {reader.__name__}{inspect.signature(reader)}"
        ) from None
    return reader(**options)


__all__ = [
    "READERS",
    "read_amazon2018",
    "read_amazon2023",
    "read_lcrec",
    "read_minionerec",
    "read_source",
    "read_unisrec",
]
