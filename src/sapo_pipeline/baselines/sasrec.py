"""SASRec (Kang & McAuley 2018): causal self-attention over the item sequence.

Model: item embeddings (id 0 = padding, catalog item ``i`` = row ``i + 1``) scaled by
``sqrt(hidden)`` plus learned position embeddings (``positions``: counted from the first item,
or back from the last as the original's left padding makes them; rows are right-padded, so no
item attends to padding), dropout, ``blocks`` pre-norm transformer blocks
with causal self-attention, a final layer norm. The score of item ``j`` after position ``t`` is
``h_t . E_j`` (tied item embeddings).

Training (:func:`train_sasrec`): every position of each user's chronological train sequence
(:func:`~sapo_pipeline.data.sequences.windows` of ``max_len`` items), Adam, full-softmax
cross-entropy over all catalog items (``loss: ce``) or the original paper's binary cross-entropy
with one uniformly sampled negative per position (``loss: bce``). Batches group windows of
similar length and are cut to their longest (``group_by_length``; :func:`batches`), so the padding
of short users is not computed. After every ``eval_every``
epochs the valid NDCG@``select_k`` of the full ranking is computed on the valid rows; training
stops after ``patience`` evaluations without improvement and the best epoch's weights are kept.

Inference (:func:`rank_items`): the sample's history (as every other model sees it), the score
at its last position over the whole catalog, top-K. History items stay in the ranking (the
published protocol, as for the generative models) unless ``mask_history`` scores them -inf
(RecBole's full-sort default; for data sets without repeat purchases, chosen on valid).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from sapo_pipeline.baselines.config import SASRecConfig
from sapo_pipeline.data.sequences import user_sequences, windows
from sapo_pipeline.evaluation.metrics import ndcg_of_ranks

log = logging.getLogger(__name__)


class SASRec(nn.Module):
    """The SASRec network (see the module docstring)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_items, self.hidden, self.max_len = n_items, cfg.hidden, cfg.max_len
        self.from_end = cfg.positions == "from_end"
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.hidden, cfg.heads, cfg.hidden,
                                           cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        nn.init.normal_(self.items.weight, std=cfg.hidden ** -0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` padded item rows (0 = pad, right-padded) -> ``[B, T, hidden]``."""
        t = seq.shape[1]
        real = seq > 0
        pos = torch.arange(t, device=seq.device).expand_as(seq)
        if self.from_end:  # count back from each row's last item, as SASRec's left padding does
            pos = (real.sum(1, keepdim=True) - 1 - pos).clamp(min=0)
        x = self.items(seq) * math.sqrt(self.hidden) + self.positions(pos)
        x = self.dropout(x) * real.unsqueeze(-1)
        causal = torch.triu(torch.full((t, t), float("-inf"), device=seq.device), diagonal=1)
        return self.norm(self.blocks(x, mask=causal, is_causal=True))

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]`` -> ``[..., n_items]`` scores of every catalog item."""
        return hidden @ self.items.weight[1:].T


@dataclass
class SASRecResult:
    """A trained SASRec, its per-evaluation log and a JSON-able summary."""

    model: SASRec
    log: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _pad(rows: list[list[int]], width: int) -> np.ndarray:
    """Right-padded ``[len(rows), width]`` of catalog rows (item id + 1; the last ``width``)."""
    out = np.zeros((len(rows), width), dtype=np.int64)
    for r, seq in enumerate(rows):
        seq = seq[-width:]
        out[r, :len(seq)] = np.asarray(seq, dtype=np.int64) + 1
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("sasrec.device='cuda' but no GPU is available")
    return torch.device(name)


@torch.no_grad()
def rank_items(model: SASRec, histories: list[list[int]], k: int, batch_size: int = 512,
               mask_history: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``[n, k]`` top items (catalog ids) and scores after each history (full ranking; with
    ``mask_history`` the row's history items score -inf and rank last)."""
    model.eval()
    dev = next(model.parameters()).device
    k = min(k, model.n_items)
    top_i, top_s = [], []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        if any(len(h) == 0 for h in chunk):
            raise ValueError("rank_items: every history needs at least one item")
        seq = torch.from_numpy(_pad(chunk, min(model.max_len, max(map(len, chunk))))).to(dev)
        last = (seq > 0).sum(1) - 1
        h = model(seq)[torch.arange(len(chunk), device=dev), last]
        scores = model.scores(h)
        if mask_history:
            rows = torch.cat([torch.full((len(hh),), r) for r, hh in enumerate(chunk)])
            cols = torch.as_tensor([i for hh in chunk for i in hh])
            scores[rows.to(dev), cols.to(dev)] = float("-inf")
        s, i = scores.topk(k, dim=-1)
        top_i.append(i.cpu().numpy())
        top_s.append(s.float().cpu().numpy())
    return np.concatenate(top_i), np.concatenate(top_s)


def ndcg_at(top: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Mean NDCG@k of one target per row, given ``[n, >=k]`` ranked items."""
    hit = top[:, :k] == np.asarray(targets)[:, None]
    return float(ndcg_of_ranks(np.where(hit.any(1), hit.argmax(1), -1), k).mean())


def batches(lengths: np.ndarray, batch_size: int, group: int | None, gen: torch.Generator
            ) -> list[torch.Tensor]:
    """One epoch's batches of row indices: a random permutation cut into ``batch_size`` rows;
    with ``group``, every ``group`` batches' worth of the permutation is sorted by length before
    it is cut, and the batches are shuffled (similar lengths share a batch, the order of the
    windows over the epoch stays random)."""
    order = torch.randperm(len(lengths), generator=gen)
    if group is None:
        return list(order.split(batch_size))
    lengths = torch.as_tensor(lengths)
    out: list[torch.Tensor] = []
    for chunk in order.split(batch_size * group):
        chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
        out += list(chunk.split(batch_size))
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


def _loss(model: SASRec, batch: torch.Tensor, cfg: SASRecConfig, gen: torch.Generator,
          per: float | None = None) -> torch.Tensor:
    """The batch's loss summed over its positions, divided by ``per`` (default: their number,
    the batch mean). Length-grouped batches pass the epoch's mean positions per batch, so that a
    batch of short windows does not weigh each of its positions more than a random batch would."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    mask = (inputs > 0) & (targets > 0)
    h = model(inputs)[mask]  # [N, hidden]
    pos = targets[mask] - 1
    if cfg.loss == "ce":
        total = nn.functional.cross_entropy(model.scores(h), pos, reduction="sum")
    else:
        neg = torch.randint(0, model.n_items, pos.shape, generator=gen).to(pos.device)
        emb = model.items.weight[1:]
        pos_s, neg_s = (h * emb[pos]).sum(-1), (h * emb[neg]).sum(-1)
        total = (nn.functional.softplus(-pos_s) + nn.functional.softplus(neg_s)).sum()
    return total / (per if per is not None else max(int(mask.sum()), 1))


def train_sasrec(samples: pl.DataFrame, n_items: int, cfg: SASRecConfig
                 ) -> SASRecResult:
    """Train on the train split's sequences, select on valid (see the module docstring)."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    dev = _device(cfg.device)
    seqs = user_sequences(samples, "train")
    chunks = [items for items, _ in windows(seqs.items, cfg.max_len + 1)]  # first target: 1
    data = torch.from_numpy(_pad(chunks, cfg.max_len + 1))
    lengths = (data > 0).sum(1).numpy()
    positions = float((lengths - 1).clip(min=0).sum())  # predicted positions per epoch
    valid = samples.filter(pl.col("split") == "valid").sort("sample_id")
    if cfg.max_valid_rows is not None and valid.height > cfg.max_valid_rows:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(valid.height, cfg.max_valid_rows,
                                                              replace=False))
        valid = valid[pick.tolist()]
    if valid.height == 0:
        raise ValueError("sasrec: no valid rows to select on")
    v_hist = [list(h) for h in valid["history"]]
    v_target = valid["target"].to_numpy()
    model = SASRec(n_items, cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, stale = -1.0, None, 0, 0
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="sasrec",
               disable=None if cfg.progress_bar else True,  # None: off unless a tty
               leave=False)
    try:
        for epoch in bar:
            model.train()
            losses = []
            epoch_batches = batches(lengths, cfg.batch_size, cfg.group_by_length, gen)
            per = (positions / len(epoch_batches)) if cfg.group_by_length is not None else None
            for rows in epoch_batches:
                # right-padded: the columns after the longest window of the batch are padding
                batch = data[rows, :int(lengths[rows].max())].to(dev)
                loss = _loss(model, batch, cfg, gen, per)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            if epoch % cfg.eval_every and epoch != cfg.max_epochs:
                continue
            top, _ = rank_items(model, v_hist, cfg.select_k, cfg.eval_batch_size,
                                cfg.mask_history)
            score = ndcg_at(top, v_target, cfg.select_k)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                            f"valid_ndcg@{cfg.select_k}": score,
                            "seconds": round(time.perf_counter() - start, 2)})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", ndcg=f"{score:.4f}")
            if epoch % 10 == 0:  # a log file's view of the bar (RQ-VAE logs the same way)
                log.info("sasrec epoch %d/%d loss %.4f valid NDCG@%d %.4f (best %.4f, %.0fs)",
                         epoch, cfg.max_epochs, np.mean(losses), cfg.select_k, score,
                         max(best, score), history[-1]["seconds"])
            if score > best:
                best, best_state, best_epoch, stale = score, copy.deepcopy(model.state_dict()), \
                    epoch, 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    finally:
        torch.set_num_threads(threads)
    model.load_state_dict(best_state)
    model.eval()
    summary = {"best_epoch": best_epoch, f"best_valid_ndcg@{cfg.select_k}": best,
               "epochs_run": history[-1]["epoch"], "train_windows": len(chunks),
               "train_sequences": len(seqs), "train_transitions": seqs.transitions,
               "valid_rows": valid.height, "loss": cfg.loss,
               "parameters": sum(p.numel() for p in model.parameters()),
               "seconds": round(time.perf_counter() - start, 2)}
    log.info("sasrec: best valid NDCG@%d %.4f at epoch %d (%d epochs, %.0fs)", cfg.select_k,
             best, best_epoch, summary["epochs_run"], summary["seconds"])
    return SASRecResult(model=model.cpu(), log=history, summary=summary)
