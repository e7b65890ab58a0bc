"""The supervised fine-tuning loop shared by Stage 1 (alignment) and Stage 2 (reasoning).

:func:`train_sft` runs through ``accelerate.Accelerator``: the same code serves one CPU, one GPU
or several processes (DDP; gloo on CPU). What it guarantees:

* Loss = mean cross-entropy over the labelled tokens of the *global* batch (every micro-batch of
  every process of one optimizer step): each micro-batch contributes its token-loss sum divided
  by the step's global labelled-token count (known on every process from the plan, no
  communication), times the number of processes (DDP averages gradients). So two processes with
  batch b give the same update as one process with batch 2b, up to float summation order.
* Batches come from :class:`~sapo_pipeline.model.sft_data.StepPlan` (length-bucketed by
  default); ``selective_head`` applies the output head only at labelled positions.
* Resume: a checkpoint every ``checkpoint_every`` steps and at the end in ``work_dir``
  (:mod:`sapo_pipeline.model.sft_state`); a re-run resumes from the latest compatible one and
  ends with the same weights as an uninterrupted run. A completed run is not trained again.
* Early stopping on the valid loss (evaluated every ``eval_every`` steps and at the end) and, with
  ``load_best_at_end``, the best weights at the end.

Per-step figures never leave the device between log rows: loss sums and grad norms accumulate
as tensors and are read (and all-reduced) once per log row.

Measured (bench/sft/run.py, CPU, default preset, batch 16, medians of 3): 3446 tokens/s against
984 for transformers' Trainer on the same model, data and batch size (3.5x) and 2067 for Trainer
with ``group_by_length`` sampling (1.7x). The selective head alone is worth ~2x on
alignment-style rows (only ~9% of the tokens are labelled); bucketing ~2x over a plain shuffle.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm

from sapo_pipeline.model.sft_config import TrainConfig
from sapo_pipeline.model.sft_data import (
    IGNORE_INDEX,
    StepPlan,
    TokenizedCorpus,
    collate_packed,
    collate_padded,
)
from sapo_pipeline.model.sft_state import LoopState, SFTWorkDir
from sapo_pipeline.training.accelerator import make_accelerator, use_bf16
from sapo_pipeline.training.head import head_parts, next_token_logits
from sapo_pipeline.training.rng import gather_rng_state, set_rng_state
from sapo_pipeline.training.schedule import build_optimizer, build_scheduler, warmup_steps
from sapo_pipeline.training.workdir import (
    fingerprint,
    load_trainable,
    trainable_state,
    weights_hash,
)

logger = logging.getLogger(__name__)

#: Config fields that do not change the trained weights (left out of the resume fingerprint).
_NO_TRAJECTORY = ("checkpoint_every", "save_total_limit", "log_every", "work_dir", "resume",
                  "progress_bar", "num_threads", "device")


@dataclass
class LoopInfo:
    """What a callback sees: ``event`` is begin (before the first update of this invocation),
    step (after an optimizer step and its log / eval / checkpoint) or end."""

    event: str
    step: int
    epoch: int
    model: Any
    state: LoopState


@dataclass
class TrainResult:
    model: Any
    log: list[dict[str, Any]]
    summary: dict[str, Any]


class SFTLossModule(torch.nn.Module):
    """Wraps a causal LM; ``forward`` returns the summed token cross-entropy of the labels.

    With ``selective`` the decoder body runs on every position but the output head only on the
    positions whose next token is labelled. Models whose head does more than a linear map
    (logit soft-capping / scaling) always use the full path.
    """

    def __init__(self, model: Any, selective: bool = True) -> None:
        super().__init__()
        self.model = model
        self._parts = head_parts(model) if selective else None
        self.selective = self._parts is not None

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = next_token_logits(self.model, self._parts, input_ids, keep, attention_mask,
                                   position_ids)
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def run_fingerprint(cfg: TrainConfig, train: TokenizedCorpus, valid: TokenizedCorpus | None,
                    model: torch.nn.Module, world: int, stage: str) -> str:
    conf = {k: v for k, v in asdict(cfg).items() if k not in _NO_TRAJECTORY}
    return fingerprint({"stage": stage, "config": conf, "train": train.fingerprint(),
                        "valid": valid.fingerprint() if valid is not None else None,
                        "weights": weights_hash(model), "world": world})


class _Batcher:
    def __init__(self, corpus: TokenizedCorpus, cfg: TrainConfig, pad_id: int) -> None:
        self.corpus, self.cfg, self.pad_id = corpus, cfg, pad_id

    def __call__(self, indices: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        if self.cfg.batching == "pack":
            b = collate_packed(self.corpus, indices, self.pad_id,
                               self.cfg.pack_length or self.cfg.max_length)
        else:
            b = collate_padded(self.corpus, indices, self.pad_id, self.cfg.pad_to_multiple_of)
        return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def valid_loss(module: SFTLossModule, corpus: TokenizedCorpus, indices: np.ndarray,
               cfg: TrainConfig, pad_id: int, accelerator: Accelerator, bf16: bool) -> float:
    """Mean labelled-token loss over ``indices`` (sharded across processes, summed back)."""
    rank, world = accelerator.process_index, accelerator.num_processes
    order = indices[np.argsort(-corpus.lengths[indices], kind="stable")][rank::world]
    sums = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    was_training = module.training
    module.eval()
    with torch.no_grad(), torch.autocast(accelerator.device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), cfg.eval_batch_size):
            chunk = order[start:start + cfg.eval_batch_size]
            batch = collate_padded(corpus, chunk, pad_id, cfg.pad_to_multiple_of)
            loss = module(**{k: v.to(accelerator.device) for k, v in batch.items()})
            sums[0] += loss.double()
            sums[1] += float(corpus.n_labels[chunk].sum())
    module.train(was_training)
    sums = accelerator.reduce(sums, reduction="sum")
    return float(sums[0] / sums[1])


def train_sft(
    model: Any,
    train: TokenizedCorpus,
    valid: TokenizedCorpus | None,
    cfg: TrainConfig,
    *,
    pad_id: int,
    stage: str = "sft",
    callbacks: Sequence[Callable[[LoopInfo], None]] = (),
) -> TrainResult:
    """Train ``model`` in place on ``train``; see the module docstring. Returns the model (best
    or last weights), the log rows and a summary."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    acc = make_accelerator(cfg.device)
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    plan = StepPlan(train.lengths, batch_size=cfg.batch_size, micro_per_step=cfg.grad_accum * world,
                    seed=cfg.seed, mode=cfg.batching, bucket_size=cfg.bucket_size)
    budget = cfg.epochs * plan.steps_per_epoch
    total = min(cfg.max_steps, budget) if cfg.max_steps else budget
    bf16 = use_bf16(cfg.autocast, acc.device)
    valid = valid if valid is not None and len(valid) else None
    eval_idx = None
    if valid is not None:
        eval_idx = np.arange(len(valid))
        if cfg.max_eval_examples and len(valid) > cfg.max_eval_examples:
            rng = np.random.default_rng([cfg.seed, 7])
            eval_idx = np.sort(rng.choice(len(valid), cfg.max_eval_examples, replace=False))

    model.train()
    work = SFTWorkDir(cfg.work_dir, run_fingerprint(cfg, train, valid, model, world, stage), main)
    module = SFTLossModule(model, cfg.selective_head)
    optimizer = build_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                eps=cfg.adam_eps)
    scheduler = build_scheduler(optimizer, total=total,
                                warmup=warmup_steps(total, cfg.warmup_steps, cfg.warmup_ratio),
                                min_ratio=cfg.min_lr_ratio)
    wrapped, optimizer = acc.prepare(module, optimizer)
    inner = acc.unwrap_model(wrapped)

    ckpt = work.prepare(cfg.resume)
    acc.wait_for_everyone()
    state, log_rows, best = LoopState(), [], None
    if ckpt is not None:
        saved = SFTWorkDir.load(ckpt, acc.device)
        load_trainable(model, saved["trainable"], str(ckpt))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], rank, acc.device)
        state, log_rows, best = saved["state"], saved["log"], saved["best"]
        if best is None and cfg.load_best_at_end and state.best_step == state.step:
            best = saved["trainable"]  # the checkpoint's own weights are the best ones
        logger.info("%s: resuming from %s (step %d of %d)", stage, ckpt, state.step, total)
    else:
        torch.manual_seed(cfg.seed + rank)
    logger.info("%s: %d train / %s valid examples, %d steps (%d per epoch, %d left out per "
                "epoch), global batch %d, %d process(es), bf16=%s, batching=%s", stage,
                len(train), len(valid) if valid is not None else 0, total, plan.steps_per_epoch,
                plan.left_out_per_epoch, plan.step_batch, world, bf16, cfg.batching)

    batcher = _Batcher(train, cfg, pad_id)
    window = {k: torch.tensor(v, dtype=torch.float64, device=acc.device)
              for k, v in state.window.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    clip = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf
    bar = tqdm(total=total, initial=state.step, desc=stage, dynamic_ncols=True,
               disable=None if (main and cfg.progress_bar) else True)  # None: off unless a tty

    def notify(event: str) -> None:
        for cb in callbacks:
            cb(LoopInfo(event, state.step, state.epoch, model, state))

    def evaluate() -> float:
        nonlocal best
        loss = valid_loss(inner, valid, eval_idx, cfg, pad_id, acc, bf16)
        state.last_eval_step = state.step
        if state.best_valid is None or loss < state.best_valid - cfg.early_stopping_min_delta:
            state.best_valid, state.best_step, state.bad_evals = loss, state.step, 0
            best = trainable_state(model) if cfg.load_best_at_end else None
        else:
            state.bad_evals += 1
        if cfg.early_stopping_patience and state.bad_evals >= cfg.early_stopping_patience:
            state.stopped_early = True
            logger.info("%s: early stop at step %d (best valid %.4f at step %d)", stage,
                        state.step, state.best_valid, state.best_step)
        return loss

    def emit_log(valid_value: float | None) -> None:
        w = acc.reduce(torch.stack([window["loss_sum"]]), reduction="sum")
        steps = max(window["steps"].item(), 1.0)
        secs = window["seconds"].item()
        row = {"step": state.step, "epoch": state.epoch, "valid_loss": valid_value,
               "train_loss": (w[0] / window["labels"]).item() if window["labels"] > 0 else None,
               "lr": last_lr, "grad_norm": window["grad_norm_sum"].item() / steps,
               "tokens_per_s": window["tokens"].item() / secs if secs > 0 else None,
               "tokens": state.tokens_seen, "elapsed_s": state.train_seconds}
        log_rows.append(row)
        for v in window.values():
            v.zero_()
        work.write_live_log(log_rows)
        if row["train_loss"] is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", lr=f"{row['lr']:.2e}")

    def checkpoint() -> None:
        states = gather_rng_state(acc)
        state.window = {k: float(v.item()) for k, v in window.items()}
        if main:
            work.save(state, trainable=trainable_state(model),
                      best=best if state.best_step != state.step else None,
                      optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                      rng=states, log_rows=log_rows, keep=cfg.save_total_limit)
        acc.wait_for_everyone()

    last_lr = optimizer.param_groups[0]["lr"]
    notify("begin")
    while not state.completed and state.step < total and not state.stopped_early:
        steps = plan.epoch(state.epoch)
        for b in range(state.step_in_epoch, plan.steps_per_epoch):
            t0 = time.perf_counter()
            step_idx = steps[b]
            n_labels = float(train.n_labels[step_idx].sum())
            micros = plan.micro_batches(step_idx, rank, world)
            for j, idx in enumerate(micros):
                batch = batcher(idx, acc.device)
                sync = contextlib.nullcontext() if j == len(micros) - 1 else acc.no_sync(wrapped)
                with sync, torch.autocast(acc.device.type, torch.bfloat16, enabled=bf16):
                    loss_sum = wrapped(**batch)
                    acc.backward(loss_sum * (world / n_labels))
                window["loss_sum"] += loss_sum.detach().double()
            norm = acc.clip_grad_norm_(params, clip)
            last_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            n_tokens = float(train.lengths[step_idx].sum())
            state.step, state.step_in_epoch = state.step + 1, b + 1
            state.tokens_seen += int(n_tokens)
            state.train_seconds += dt
            for key, val in (("labels", n_labels), ("tokens", n_tokens), ("steps", 1.0),
                             ("seconds", dt), ("grad_norm_sum", norm.double())):
                window[key] += val
            bar.update(1)
            done = state.step >= total
            valid_value = None
            if valid is not None and ((cfg.eval_every and state.step % cfg.eval_every == 0)
                                      or done):
                valid_value = evaluate()
            if state.step % cfg.log_every == 0 or valid_value is not None or done:
                emit_log(valid_value)
            if state.stopped_early or done:
                break
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                checkpoint()
            notify("step")
        else:
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
            continue
        break
    bar.close()
    if not state.completed:
        if valid is not None and state.last_eval_step != state.step:
            emit_log(evaluate())
        state.completed = True
        checkpoint()
        notify("step")
    if cfg.load_best_at_end and state.best_step is not None and state.best_step != state.step:
        if best is None:
            raise RuntimeError(f"{stage}: best weights of step {state.best_step} are missing")
        load_trainable(model, best, f"{stage} best weights")
        logger.info("%s: loaded the best weights (step %d, valid loss %.4f)", stage,
                    state.best_step, state.best_valid)
    notify("end")
    summary = {"stage": stage, "steps": state.step, "total_steps": total,
               "steps_per_epoch": plan.steps_per_epoch, "last_epoch": state.epoch,
               "left_out_per_epoch": plan.left_out_per_epoch, "global_batch": plan.step_batch,
               "processes": world, "device": acc.device.type, "bf16": bf16,
               "batching": cfg.batching,
               "best_valid_loss": state.best_valid, "best_step": state.best_step,
               "final_weights": "best" if (cfg.load_best_at_end and state.best_step is not None)
               else "last", "stopped_early": state.stopped_early,
               "tokens_seen": state.tokens_seen, "train_seconds": round(state.train_seconds, 3)}
    model.eval()
    return TrainResult(model=model, log=log_rows, summary=summary)
