"""RQ-VAE (METHOD.md §1): MLP encoder -> latent -> K residual codebooks -> MLP decoder.

Loss = reconstruction MSE + codebook loss + ``commitment_weight`` * commitment loss, summed over
levels for the two quantisation terms:

* level k quantises the residual ``r_k = z - sum_{j<k} sg(q_j)`` to its nearest code ``q_k``;
* codebook loss ``||sg(r_k) - q_k||^2`` moves the codes, commitment loss ``||r_k - sg(q_k)||^2``
  moves the encoder;
* the decoder sees ``z + sg(sum_k q_k - z)`` (straight-through estimator).

Codebooks start from k-means on the initial encoder's (residual) outputs; every
``dead_code_reset_every`` steps, codes no batch used since the last check are moved onto random
residuals of the current batch. Inputs are standardised per dimension (mean/std kept as buffers).
Training is deterministic for a fixed seed on CPU.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sapo_pipeline.sid.config import RQVAEConfig
from sapo_pipeline.sid.rqkmeans import fit_codebook, nearest_code

logger = logging.getLogger(__name__)


def _mlp(dims: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """The RQ-VAE network; ``forward`` returns reconstruction, codes and loss parts."""

    def __init__(self, input_dim: int, cfg: RQVAEConfig):
        super().__init__()
        self.input_dim = int(input_dim)
        self.levels, self.codebook_size = cfg.levels, cfg.codebook_size
        enc = [self.input_dim, *cfg.hidden_dims, cfg.latent_dim]
        self.encoder = _mlp(enc, cfg.dropout)
        self.decoder = _mlp(enc[::-1], cfg.dropout)
        self.codebooks = nn.Parameter(
            torch.randn(cfg.levels, cfg.codebook_size, cfg.latent_dim) * 0.1
        )
        self.register_buffer("mean", torch.zeros(self.input_dim))
        self.register_buffer("std", torch.ones(self.input_dim))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise raw embeddings with the stored mean/std."""
        return (x - self.mean) / self.std

    def quantize(self, z: torch.Tensor) -> dict[str, Any]:
        """Residual quantisation of latents ``z`` [b, d]."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        cb_loss = z.new_zeros(())
        commit_loss = z.new_zeros(())
        for level in range(self.levels):
            book = self.codebooks[level]
            dist = (
                residual.detach().pow(2).sum(1, keepdim=True)
                - 2.0 * residual.detach() @ book.detach().T
                + book.detach().pow(2).sum(1)[None, :]
            )
            idx = dist.argmin(dim=1)
            q = book[idx]
            cb_loss = cb_loss + (residual.detach() - q).pow(2).mean()
            commit_loss = commit_loss + (residual - q.detach()).pow(2).mean()
            residuals.append(residual)
            codes.append(idx)
            quantized = quantized + q.detach()
            residual = residual - q.detach()
        z_q = z + (quantized - z).detach()  # straight-through
        return {
            "z_q": z_q,
            "codes": torch.stack(codes, dim=1),
            "residuals": residuals,
            "codebook_loss": cb_loss,
            "commitment_loss": commit_loss,
        }

    def forward(self, x_scaled: torch.Tensor) -> dict[str, Any]:
        z = self.encoder(x_scaled)
        out = self.quantize(z)
        out["recon"] = self.decoder(out["z_q"])
        out["recon_loss"] = (out["recon"] - x_scaled).pow(2).mean()
        return out


@dataclass
class RQVAEResult:
    """Output of :func:`train_rqvae`."""

    state_dict: dict[str, torch.Tensor] = field(metadata={"help": "trained RQVAE weights (CPU)."})
    codes: np.ndarray = field(metadata={"help": "int64 [n, K] codes of every item (eval mode)."})
    history: list[dict[str, Any]] = field(metadata={"help": "one JSON-able dict per epoch."})
    codebooks: np.ndarray = field(metadata={"help": "float32 [K, C, latent_dim]."})
    last_residuals: np.ndarray = field(
        metadata={"help": "float32 [n, latent_dim] input of the last quantiser (collisions)."}
    )
    reconstruction_mse: float = field(
        metadata={"help": "final reconstruction MSE on the (scaled) embeddings."}
    )
    input_dim: int = field(metadata={"help": "embedding dimension."})
    config: dict[str, Any] = field(metadata={"help": "the RQVAEConfig as a dict."})
    train_seconds: float = field(default=0.0, metadata={"help": "wall-clock training time."})


def load_rqvae(state_dict: dict[str, torch.Tensor], cfg: RQVAEConfig) -> RQVAE:
    """Rebuild a trained :class:`RQVAE` from its ``state_dict`` (e.g. ``torch.load(weights_only=True)``)."""
    input_dim = int(state_dict["mean"].shape[0])
    model = RQVAE(input_dim, cfg)
    model.load_state_dict(state_dict)
    model.eval()
    return model


@torch.no_grad()
def encode_codes(
    model: RQVAE, embeddings: np.ndarray, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray, float]:
    """Codes [n, K], last-level residuals [n, d] and reconstruction MSE for raw embeddings."""
    model.eval()
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    codes, last, sq = [], [], 0.0
    for start in range(0, len(x), batch_size):
        xb = model.scale(x[start : start + batch_size].to(model.mean.device))
        out = model(xb)
        codes.append(out["codes"].cpu())
        last.append(out["residuals"][-1].cpu())
        sq += float((out["recon"] - xb).pow(2).sum())
    mse = sq / max(1, x.numel())
    return (torch.cat(codes).numpy().astype(np.int64), torch.cat(last).numpy(), mse)


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"train_rqvae: embeddings must be a non-empty 2-d array, got {x.shape}")
    if not np.isfinite(x).all():
        bad = np.unique(np.where(~np.isfinite(x))[0])[:10].tolist()
        raise ValueError(f"train_rqvae: non-finite embedding values in rows {bad}")
    return x


@torch.no_grad()
def _kmeans_init(model: RQVAE, x: torch.Tensor, cfg: RQVAEConfig, gen: torch.Generator) -> None:
    n = len(x)
    idx = torch.randperm(n, generator=gen)[: min(n, cfg.kmeans_max_samples)]
    residual = model.encoder(x[idx]).cpu().numpy()
    for level in range(cfg.levels):
        book, k = fit_codebook(residual, cfg.codebook_size, cfg.seed + level, cfg.kmeans_iters)
        model.codebooks.data[level] = torch.from_numpy(book).to(model.codebooks.device)
        residual = residual - book[nearest_code(residual, book)]
        logger.debug("rqvae k-means init level %d: %d distinct clusters", level, k)


@torch.no_grad()
def _reset_dead_codes(
    model: RQVAE,
    counts: torch.Tensor,
    residuals: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
) -> int:
    """Move codes unused since the last check onto random current-batch residuals."""
    n_reset = 0
    state = opt.state.get(model.codebooks, {})
    for level in range(model.levels):
        dead = torch.nonzero(counts[level] == 0).flatten()
        if len(dead) == 0:
            continue
        pool = residuals[level].detach()
        pick = torch.randint(0, len(pool), (len(dead),), generator=gen)
        model.codebooks.data[level, dead] = pool[pick]
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][level, dead] = 0.0
        n_reset += len(dead)
    return n_reset


def _collision_rate(codes: np.ndarray) -> float:
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def _epoch_row(
    epoch: int, sums: dict[str, float], n_reset: int, epoch_codes: np.ndarray, codebook_size: int
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        **sums,
        "dead_codes_reset": n_reset,
        "utilisation": [
            len(np.unique(epoch_codes[:, k])) / codebook_size for k in range(epoch_codes.shape[1])
        ],
        "collision_rate": _collision_rate(epoch_codes),
    }


def _fit(x_np: np.ndarray, cfg: RQVAEConfig) -> tuple[RQVAE, list[dict[str, Any]]]:
    """The training loop (RNG, threads and determinism are set by the caller)."""
    n, dim = x_np.shape
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = RQVAE(dim, cfg).to(device)
    if cfg.standardize:
        model.mean.copy_(torch.from_numpy(x_np.mean(0)))
        model.std.copy_(torch.from_numpy(np.maximum(x_np.std(0), 1e-6)))
    x = model.scale(torch.from_numpy(x_np).to(device))
    if cfg.kmeans_init:
        _kmeans_init(model, x, cfg, gen)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = min(cfg.batch_size, n)
    counts = torch.zeros(cfg.levels, cfg.codebook_size, dtype=torch.long)
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums = {"loss": 0.0, "recon_loss": 0.0, "codebook_loss": 0.0, "commitment_loss": 0.0}
        epoch_codes = np.zeros((n, cfg.levels), dtype=np.int64)
        n_reset = 0
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            out = model(x[idx])
            loss = (
                out["recon_loss"]
                + cfg.codebook_weight * out["codebook_loss"]
                + cfg.commitment_weight * out["commitment_loss"]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            codes_b = out["codes"].detach().cpu()
            epoch_codes[idx.numpy()] = codes_b.numpy()
            for level in range(cfg.levels):
                counts[level] += torch.bincount(codes_b[:, level], minlength=cfg.codebook_size)
            w = len(idx) / n
            sums["loss"] += loss.item() * w
            for key in ("recon_loss", "codebook_loss", "commitment_loss"):
                sums[key] += out[key].item() * w
            if cfg.dead_code_reset_every and step % cfg.dead_code_reset_every == 0:
                n_reset += _reset_dead_codes(model, counts, out["residuals"], opt, gen)
                counts.zero_()
        row = _epoch_row(epoch + 1, sums, n_reset, epoch_codes, cfg.codebook_size)
        history.append(row)
        if epoch == 0 or (epoch + 1) % max(1, cfg.epochs // 10) == 0:
            logger.info(
                "rqvae epoch %d/%d loss %.4f recon %.4f util %s collisions %.4f",
                epoch + 1,
                cfg.epochs,
                row["loss"],
                row["recon_loss"],
                [round(u, 3) for u in row["utilisation"]],
                row["collision_rate"],
            )
    return model, history


def train_rqvae(embeddings: np.ndarray, cfg: RQVAEConfig | None = None) -> RQVAEResult:
    """Train an RQ-VAE on item embeddings ``[n, d]`` and return weights, codes and history.

    Runs with deterministic torch algorithms and ``cfg.num_threads`` threads, inside a forked
    torch RNG: the caller's global RNG state, thread count and determinism flag are restored.
    """
    cfg = cfg or RQVAEConfig()
    x_np = _check_embeddings(embeddings)
    dim = x_np.shape[1]
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    t0 = time.perf_counter()
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.use_deterministic_algorithms(True)
        limits = threadpool_limits(cfg.num_threads) if cfg.num_threads else nullcontext()
        with torch.random.fork_rng(devices=[]), limits:  # threads also for k-means / BLAS
            model, history = _fit(x_np, cfg)
        codes, last, mse = encode_codes(model, x_np)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)
    seconds = time.perf_counter() - t0
    logger.info(
        "rqvae trained in %.1fs: recon mse %.4f, collision rate %.4f",
        seconds,
        mse,
        _collision_rate(codes),
    )
    cfg_dict = asdict(cfg)
    cfg_dict["hidden_dims"] = list(cfg.hidden_dims)
    return RQVAEResult(
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        codes=codes,
        history=history,
        codebooks=model.codebooks.detach().cpu().numpy().copy(),
        last_residuals=last,
        reconstruction_mse=mse,
        input_dim=dim,
        config=cfg_dict,
        train_seconds=seconds,
    )
