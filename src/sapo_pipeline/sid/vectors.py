"""One vector per SID code: what Stage 1 can initialise the SID token embeddings from.

Every quantiser's state (``06_models/sid_quantizer.safetensors``) holds ``codebooks``, a float32
``[K, C, d]`` array whose row ``[k, c]`` is the vector of code ``c`` at level ``k``:

* ``rqvae``: the RQ-VAE's residual codebooks, in its ``latent_dim``-wide latent space;
* ``rqkmeans``: the residual k-means centroids, in the (optionally standardised) embedding space;
* ``published``: the MiniOneRec index has codes but no vectors, so :func:`residual_code_means`
  gives each code the mean residual of the items that carry it (what residual k-means would
  place there for these assignments), in the item-embedding space.

A SID level added by collision resolution (``collisions.method: extra_level``) has no codebook:
its tokens keep their random initialisation.
"""

from __future__ import annotations

import numpy as np


def residual_code_means(embeddings: np.ndarray, codes: np.ndarray,
                        codebook_size: int) -> np.ndarray:
    """``[K, C, d]`` code vectors for fixed ``codes`` ``[n, K]`` of ``embeddings`` ``[n, d]``.

    Level 0 works on the centred embeddings; a level's code vector is the mean residual of the
    items with that code, and each item's residual for the next level is its residual minus its
    code's vector. A code no item uses gets the zero vector."""
    x = np.asarray(embeddings, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    if x.ndim != 2 or codes.ndim != 2 or len(x) != len(codes):
        raise ValueError(f"residual_code_means: embeddings {x.shape} and codes {codes.shape} "
                         "must be [n, d] and [n, K] for the same n")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"residual_code_means: codes outside [0, {codebook_size})")
    residual = x - x.mean(axis=0, keepdims=True)
    books = np.zeros((codes.shape[1], codebook_size, x.shape[1]), dtype=np.float64)
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size).astype(np.float64)
        sums = np.zeros((codebook_size, x.shape[1]))
        np.add.at(sums, codes[:, level], residual)
        used = counts > 0
        books[level, used] = sums[used] / counts[used, None]
        residual = residual - books[level, codes[:, level]]
    return books.astype(np.float32)


def code_vectors(quantizer_state: dict[str, np.ndarray]) -> np.ndarray:
    """The ``[K, C, d]`` code vectors of a ``sid_quantizer`` state (see the module docstring)."""
    if "codebooks" not in quantizer_state:
        raise ValueError("sid_quantizer: no 'codebooks' array (a catalog built before code "
                         f"vectors were stored? keys: {sorted(quantizer_state)}); rebuild the "
                         "SID catalog (kedro run --pipelines=sid_catalog)")
    books = np.asarray(quantizer_state["codebooks"], dtype=np.float32)
    if books.ndim != 3:
        raise ValueError(f"sid_quantizer: 'codebooks' has shape {books.shape}, expected [K, C, d]")
    return books
