"""Figures of the SID catalog: the quantiser's training curve and per-level code usage."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_sid_catalog(table_codes: np.ndarray, history: list[dict[str, Any]], codebook_size: int, levels: int):
    """Left: loss parts per epoch (RQ-VAE). Right: items per code, sorted, for each level."""
    fig, (ax_loss, ax_use) = plt.subplots(1, 2, figsize=(11, 4))
    if history:
        epochs = [h.get("epoch", i) for i, h in enumerate(history)]
        for key in ("loss", "recon_loss", "codebook_loss", "commitment_loss"):
            if key in history[0]:
                ax_loss.plot(epochs, [h[key] for h in history], label=key)
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss per item (log scale)")
        ax_loss.set_title("RQ-VAE training")
        ax_loss.legend()
    else:
        ax_loss.text(0.5, 0.5, "no training curve (RQ-KMeans)", ha="center", va="center")
        ax_loss.set_axis_off()
    for level in range(levels):
        counts = np.sort(np.bincount(table_codes[:, level], minlength=codebook_size))[::-1]
        used = int((counts > 0).sum())
        ax_use.plot(np.arange(codebook_size), counts, label=f"level {level + 1} ({used}/{codebook_size} used)")
    ax_use.set_yscale("symlog")
    ax_use.set_xlabel("code rank")
    ax_use.set_ylabel("items")
    ax_use.set_title("Code utilisation per level")
    ax_use.legend()
    fig.tight_layout()
    return fig
