"""SID token embeddings initialised from the SID code vectors (``align.sid_init: codebook``).

A from-scratch model starts every SID token at random, so ``<a_12>`` and ``<a_13>`` are as far
apart as any two tokens even when the quantiser put their items next to each other. With
``sid_init: codebook`` the row of token ``<l_c>`` becomes code ``c``'s vector at level ``l``
(:func:`sapo_pipeline.sid.vectors.code_vectors`), mapped to the hidden size by a seeded random
map with orthonormal columns (it keeps the angles and distances between a level's codes when the
code space is narrower than the model, as the RQ-VAE's latent is) and scaled so that the level's
rows have, on average, the norm of the model's other embedding rows. Each level is centred
first: what tells two codes apart is where they sit relative to the level's mean.

The rows are written before training (and before LoRA wraps a pretrained model's embeddings);
a tied output head shares them. SID levels without vectors keep their initialisation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from sapo_pipeline.sid.catalog import LEVEL_LETTERS, is_sid_token, sid_token

log = logging.getLogger(__name__)


def projection(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    """A seeded ``[in_dim, out_dim]`` map: orthonormal rows when ``in_dim <= out_dim`` (an
    isometry), else orthonormal columns (a random ``out_dim``-dimensional view)."""
    gen = np.random.default_rng(seed)
    g = gen.standard_normal((max(in_dim, out_dim), min(in_dim, out_dim)))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))  # a unique Q for the draw
    return q.T if in_dim <= out_dim else q


def sid_rows(books: np.ndarray, hidden: int, target_norm: float, seed: int) -> np.ndarray:
    """``[K, C, hidden]`` embedding rows for the ``[K, C, d]`` code vectors ``books``."""
    books = np.asarray(books, dtype=np.float64)
    proj = projection(books.shape[2], hidden, seed)
    out = np.zeros((books.shape[0], books.shape[1], hidden))
    for level, book in enumerate(books):
        centred = book - book.mean(axis=0, keepdims=True)
        rows = centred @ proj
        mean_norm = float(np.linalg.norm(rows, axis=1).mean())
        if mean_norm > 0:
            out[level] = rows * (target_norm / mean_norm)
    return out


@torch.no_grad()
def init_sid_embeddings(model: Any, tokenizer: Any, books: np.ndarray,
                        seed: int) -> dict[str, Any]:
    """Write the SID token rows of ``model``'s input embedding (and of an untied output head)
    from ``books`` ``[K, C, d]``; returns what was done (for the checkpoint's record)."""
    vocab = tokenizer.get_vocab()
    emb = model.get_input_embeddings().weight
    ids = {(level, code): vocab[sid_token(level, code)]
           for level in range(books.shape[0]) for code in range(books.shape[1])
           if sid_token(level, code) in vocab}
    if not ids:
        raise ValueError("sid_init: codebook: the tokenizer has none of the codebooks' SID "
                         f"tokens (codebooks of shape {tuple(books.shape)})")
    sid_ids = set(ids.values())
    others = [i for i in range(emb.shape[0]) if i not in sid_ids]
    target = float(emb[others].float().norm(dim=1).mean())
    rows = sid_rows(books, emb.shape[1], target, seed)
    index = torch.tensor(list(ids.values()))
    values = torch.tensor(np.array([rows[lc] for lc in ids]), dtype=emb.dtype)
    emb[index] = values
    head = model.get_output_embeddings()
    if head is not None and head.weight is not emb:
        head.weight[index] = values.to(head.weight.dtype)
    levels_in_vocab = 1 + max(LEVEL_LETTERS.index(t[1]) for t in vocab if is_sid_token(t))
    report = {"method": "codebook", "code_dim": int(books.shape[2]), "rows": len(ids),
              "levels": int(books.shape[0]), "levels_in_vocab": levels_in_vocab,
              "target_norm": target, "seed": seed}
    log.info("SID embeddings: %d rows from %d-d code vectors (%d of %d SID levels; row norm "
             "%.3f)", len(ids), books.shape[2], books.shape[0], levels_in_vocab, target)
    return report

