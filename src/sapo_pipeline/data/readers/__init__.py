"""Readers: one per source format, each returning a :class:`~sapo_pipeline.data.schema.RawSource`.

``read_source(fmt, **options)`` dispatches on the format name; each reader module registers its
format with ``@register(name, resolve)`` (:mod:`.registry`: how its files are found under
``ingest.source.path``), so adding a reader is one module plus its tests:

=============  ================================================================
``amazon2023``  ``read_amazon2023(reviews_path, meta_path)``
``amazon2018``  ``read_amazon2018(reviews_path, meta_path)``
``minionerec``  ``read_minionerec(split_dir, item_file=None, timestamps_dir=None, category=None)``
``unisrec``     ``read_unisrec(dir, name="Scientific")``
``lcrec``       ``read_lcrec(dir, name="Games", titles_tsv=None)``
=============  ================================================================
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from sapo_pipeline.data.readers.registry import READERS, Reader, register
from sapo_pipeline.data.schema import RawSource

# every module of the package is imported: its @register lines are the registry
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from sapo_pipeline.data.readers.amazon2018 import read_amazon2018  # noqa: E402
from sapo_pipeline.data.readers.amazon2023 import read_amazon2023  # noqa: E402
from sapo_pipeline.data.readers.lcrec import read_lcrec  # noqa: E402
from sapo_pipeline.data.readers.minionerec import read_minionerec  # noqa: E402
from sapo_pipeline.data.readers.recbole import read_unisrec  # noqa: E402


def read_source(fmt: str, **options: object) -> RawSource:
    """Read a source with the reader registered for ``fmt``; unknown formats raise ValueError."""
    try:
        reader = READERS[fmt].read
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
    "Reader",
    "register",
    "read_amazon2018",
    "read_amazon2023",
    "read_lcrec",
    "read_minionerec",
    "read_source",
    "read_unisrec",
]
