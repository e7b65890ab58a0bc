"""The Stage-3 RL loop (GRPO / SAPO / ReRe), through ``accelerate.Accelerator``.

Per RL step s:

1. prompts: ``prompts_per_step`` of the train prompts, from a seeded permutation per epoch (a
   pure function of ``(seed, s)``; an epoch's remainder is left out); process r takes the r-th
   contiguous share, so every group lives whole on one process;
2. rollout: ``source.sample`` (no grad, eval mode) with a seed from ``(seed, s)`` and each
   prompt's index as its key: a prompt's responses depend on (seed, s, prompt) only, so the
   same step on any number of processes samples the same responses;
3. rewards -> advantages (:func:`~sapo_pipeline.rl.advantages.compute_advantages`);
4. pi_old (recomputed, or the rollout's; the first minibatch of the first pass uses its own
   forward, detached) and pi_ref (frozen copy of the starting model; skipped
   when beta = 0), no grad;
5. ``ppo_epochs`` passes over minibatches of ``minibatch_groups`` whole groups (seeded order):
   one forward, :func:`~sapo_pipeline.rl.loss.policy_loss`, backward, clip, optimizer step. The
   loss divides by the minibatch's *global* denominator (responses or loss tokens summed over
   processes) times the process count, so DDP's gradient average gives the global loss.

The policy stays in eval mode (dropout off, so the first pass has rho = 1 exactly). Checkpoints
every ``checkpoint_every`` steps and at the end (:mod:`sapo_pipeline.rl.state`); a re-run resumes
from the latest compatible one and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sapo_pipeline.evaluation.metrics import ndcg_of_ranks
from sapo_pipeline.rl.config import RLTrainConfig
from sapo_pipeline.rl.diagnostics import StepAccumulator
from sapo_pipeline.rl.logprob import TokenLogprobs, batched_logprobs
from sapo_pipeline.rl.loss import policy_loss
from sapo_pipeline.rl.methods import compute_advantages, method_of
from sapo_pipeline.rl.prompts import PromptSet
from sapo_pipeline.rl.rewards import step_rewards
from sapo_pipeline.rl.source import (
    RolloutSource,
    check_rollout,
    decision_ids,
    decision_tokens,
    describe_source,
)
from sapo_pipeline.rl.state import RLState, RLWorkDir
from sapo_pipeline.training.accelerator import make_accelerator, use_bf16
from sapo_pipeline.training.rng import gather_rng_state, set_rng_state
from sapo_pipeline.training.schedule import build_optimizer, build_scheduler
from sapo_pipeline.training.workdir import (
    fingerprint,
    load_trainable,
    trainable_state,
    weights_hash,
)

logger = logging.getLogger(__name__)

#: Config fields that do not change the trained weights (left out of the resume fingerprint).
_NO_TRAJECTORY = ("checkpoint_every", "save_total_limit", "log_every", "work_dir", "resume",
                  "progress_bar", "num_threads", "device", "eval_every", "eval_prompts",
                  "eval_group_size", "eval_temperature", "eval_num_beams", "launcher")
#: Fields added after work directories existed: left out of the fingerprint at these (default)
#: values, so that a run started before they existed still resumes.
_LATER_DEFAULTS = {"negative_weight": 1.0, "think_loss": True, "think_temperature": None}


@dataclass
class StepInfo:
    """What a callback sees after each RL step (after its log row and checkpoint)."""

    step: int
    row: dict[str, Any]
    model: Any
    state: RLState


@dataclass
class RLResult:
    model: Any
    log: list[dict[str, Any]]
    summary: dict[str, Any]


#: Seed salts, so that the seed streams of one run never coincide: the global torch RNG of each
#: process (dropout, initialisations), the valid rollouts, the minibatch order of an update. The training
#: rollouts of step ``s`` use ``derive_seed(seed, s)`` with the prompts' indices as keys.
SALT_TORCH_RNG = 5
SALT_EVAL_ROLLOUTS = 9
SALT_MINIBATCH_ORDER = 3  # np.random.default_rng([seed, step, epoch, rank, salt])


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


class PromptPlan:
    """Which train prompts each RL step uses (see the module docstring)."""

    def __init__(self, n: int, per_step: int, seed: int) -> None:
        if n < per_step:
            raise ValueError(f"RL: {n} train prompts cannot fill one step of {per_step} prompts")
        self.n, self.per_step, self.seed = n, per_step, seed
        self.steps_per_epoch = n // per_step

    def step(self, step: int) -> np.ndarray:
        epoch, b = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch, 11]).permutation(self.n)
        return perm[b * self.per_step:(b + 1) * self.per_step]


def _targets(prompts: PromptSet, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(prompts.targets[idx], dtype=torch.long, device=device)


def _rollout_to(rollout: Any, device: torch.device) -> Any:
    for name in ("sequences", "attention_mask", "response_mask", "sampled_mask", "step_ids",
                 "old_logprobs", "sid_codes", "group_index", "target_codes", "prompt_lengths",
                 "beam_rank"):
        value = getattr(rollout, name)
        if value is not None:
            setattr(rollout, name, value.to(device))
    return rollout


def ranking_sums(hits: Sequence[Sequence[Any]], targets: np.ndarray) -> tuple[float, float]:
    """Summed NDCG@B and Recall@B of beam lists (``.codes``, ``.score``) against target SIDs."""
    ranks = []
    for beams, target in zip(hits, targets):
        ordered = sorted(beams, key=lambda h: -float(h.score))
        codes = [tuple(int(c) for c in h.codes) for h in ordered]
        want = tuple(int(c) for c in target)
        ranks.append(codes.index(want) if want in codes else -1)
    ranks = np.asarray(ranks, dtype=np.int64)
    return float(ndcg_of_ranks(ranks, 1 << 30).sum()), float((ranks >= 0).sum())


def train_rl(model: Any, prompts: PromptSet, source: RolloutSource, cfg: RLTrainConfig, *,
             valid: PromptSet | None = None, reference: Any | None = None,
             callbacks: Sequence[Callable[[StepInfo], None]] = (),
             ranker: Callable[[Any, list[list[int]]], Sequence[Sequence[Any]]] | None = None
             ) -> RLResult:
    """Train ``model`` (the stage-2 policy) in place; see the module docstring.

    ``reference``: the frozen pi_ref (used under no_grad, never modified); default a deep copy
    of ``model`` taken before any resume. ``valid``: prompts of the periodic valid reward.
    ``ranker(model, prompt_ids)``: beam lists per prompt (the evaluation's beam search); with it
    the valid evaluation also logs ``eval_ndcg`` and ``eval_recall`` at ``eval_num_beams``.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    acc = make_accelerator(cfg.device)
    rank, world, main, device = acc.process_index, acc.num_processes, acc.is_main_process, acc.device
    if cfg.prompts_per_step % world:
        raise ValueError(f"{type(cfg).__name__}.prompts_per_step={cfg.prompts_per_step} is not "
                         f"divisible by the {world} processes")
    local = cfg.prompts_per_step // world
    mb_groups = cfg.minibatch_groups or local
    if local % mb_groups:
        raise ValueError(f"{type(cfg).__name__}.minibatch_groups={mb_groups} does not divide the "
                         f"{local} groups per process and step")
    method = method_of(cfg)  # TypeError for a config of no declared method
    decisions = None if cfg.think_loss else decision_ids(source)
    if prompts.levels < 1:
        raise ValueError("RL prompts: targets without SID levels")
    plan = PromptPlan(len(prompts), cfg.prompts_per_step, cfg.seed)
    levels = prompts.levels
    total_updates = cfg.steps * cfg.ppo_epochs * (local // mb_groups)
    bf16 = use_bf16(cfg.autocast, device)

    fp = fingerprint({"algorithm": cfg.algorithm, "world": world, "weights": weights_hash(model),
                      "prompts": prompts.fingerprint(), "source": describe_source(source),
                      "config": {k: v for k, v in asdict(cfg).items() if k not in _NO_TRAJECTORY
                                 and not (k in _LATER_DEFAULTS and v == _LATER_DEFAULTS[k])}})
    work = RLWorkDir(cfg.work_dir, fp, main)
    ref_module = None
    if cfg.beta > 0:  # the starting weights, before any resume
        if reference is None:
            reference = copy.deepcopy(model).requires_grad_(False)
        ref_module = TokenLogprobs(reference.to(device).eval(), cfg.temperature)
    model.eval()
    module = TokenLogprobs(model, cfg.temperature)
    optimizer = build_optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                eps=cfg.adam_eps)
    scheduler = build_scheduler(optimizer, total=total_updates,
                                warmup=min(cfg.warmup_steps, total_updates),
                                min_ratio=cfg.min_lr_ratio)
    wrapped, optimizer = acc.prepare(module, optimizer)
    inner = acc.unwrap_model(wrapped)
    params = [p for p in model.parameters() if p.requires_grad]
    clip = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf

    ckpt = work.prepare(cfg.resume)
    acc.wait_for_everyone()
    state, log_rows = RLState(), []
    if ckpt is not None:
        saved = RLWorkDir.load(ckpt, device)
        load_trainable(model, saved["trainable"], str(ckpt))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"], rank, device)
        state, log_rows = saved["state"], saved["log"]
        logger.info("%s: resuming from %s (step %d of %d)", cfg.algorithm, ckpt, state.step,
                    cfg.steps)
    else:
        torch.manual_seed(derive_seed(cfg.seed, rank, SALT_TORCH_RNG))
    logger.info("%s: %d train prompts, %d steps x %d prompts x G=%d, %d process(es), %d "
                "optimizer steps, beta=%g, aggregation=%s", cfg.algorithm, len(prompts),
                cfg.steps, cfg.prompts_per_step, cfg.group_size, world, total_updates, cfg.beta,
                cfg.aggregation_mode)
    eval_set = None
    if valid is not None and len(valid) and cfg.eval_every:
        pick = np.sort(np.random.default_rng([cfg.seed, 13]).permutation(len(valid))
                       [:cfg.eval_prompts])
        eval_keys = pick[rank::world]  # the rows' indices in ``valid``: their rollouts' keys
        eval_set = valid.subset(eval_keys)
    autocast = lambda: torch.autocast(device.type, torch.bfloat16, enabled=bf16)  # noqa: E731
    reduce_sum = (lambda t: acc.reduce(t, reduction="sum")) if world > 1 else (lambda t: t)

    def evaluate() -> dict[str, float]:
        t0 = time.perf_counter()
        sums = torch.zeros(levels + 1, dtype=torch.float64, device=device)
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.no_grad(), autocast():
            for start in range(0, len(eval_set), local):
                idx = np.arange(start, min(start + local, len(eval_set)))
                targets = _targets(eval_set, idx, device)
                rollout = source.sample(model, [eval_set.prompt_ids[i] for i in idx], targets,
                                        cfg.eval_group_size,
                                        seed=derive_seed(cfg.seed, SALT_EVAL_ROLLOUTS),
                                        temperature=cfg.eval_temperature, top_p=cfg.top_p,
                                        max_think_tokens=cfg.max_think_tokens,
                                        prompt_keys=[int(k) for k in eval_keys[idx]])
                rollout = _rollout_to(rollout, device)
                rewards = step_rewards(rollout.sid_codes, rollout.target_codes)
                sums[:levels] += rewards.sum(dim=0).double()
                sums[levels] += rewards.shape[0]
            ranked = torch.zeros(3, dtype=torch.float64, device=device)
            if ranker is not None and cfg.eval_num_beams:
                hits = ranker(model, list(eval_set.prompt_ids))
                ndcg, recall = ranking_sums(hits, eval_set.targets)
                ranked += torch.tensor([ndcg, recall, len(eval_set)], dtype=torch.float64,
                                       device=device)
        model.train(was_training)
        sums, ranked = reduce_sum(sums), reduce_sum(ranked)
        state.eval_seconds += time.perf_counter() - t0
        n = max(float(sums[levels]), 1.0)
        out = {f"eval_reward_step{k + 1}": float(sums[k]) / n for k in range(levels)}
        if float(ranked[2]) > 0:
            out["eval_ndcg"] = float(ranked[0] / ranked[2])
            out["eval_recall"] = float(ranked[1] / ranked[2])
        return out

    def checkpoint() -> None:
        states = gather_rng_state(acc)
        if main:
            work.save(state, trainable=trainable_state(model), optimizer=optimizer.state_dict(),
                      scheduler=scheduler.state_dict(), rng=states, log_rows=log_rows,
                      keep=cfg.save_total_limit)
        acc.wait_for_everyone()

    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"rl-{cfg.algorithm}",
               dynamic_ncols=True,
               disable=None if (main and cfg.progress_bar) else True)  # None: off unless a tty
    while not state.completed and state.step < cfg.steps:
        step = state.step
        idx = plan.step(step)[rank * local:(rank + 1) * local]
        targets = _targets(prompts, idx, device)
        # ---- rollout
        t0 = time.perf_counter()
        with torch.no_grad(), autocast():
            rollout = source.sample(model, [prompts.prompt_ids[i] for i in idx], targets,
                                    cfg.group_size, seed=derive_seed(cfg.seed, step),
                                    temperature=cfg.temperature, top_p=cfg.top_p,
                                    max_think_tokens=cfg.max_think_tokens,
                                    prompt_keys=[int(i) for i in idx])
        rollout = _rollout_to(rollout, device)
        check_rollout(rollout, len(idx), cfg.group_size, targets,
                      need_beam_rank=method.needs_beam_rank)
        t_rollout = time.perf_counter() - t0
        # ---- rewards, advantages, pi_old, pi_ref
        t1 = time.perf_counter()
        mask = rollout.sampled_mask
        adv = compute_advantages(cfg, rollout, mask)
        if not cfg.think_loss:  # no advantage on the thinking text; every denominator (token
            # and step means), the KL and the diagnostics keep counting it, so that the
            # decisions' own weight in the loss is the same as with think_loss
            adv.token = torch.where(decision_tokens(rollout.sequences, decisions), adv.token, 0.0)
        t_adv = time.perf_counter() - t1  # rewards + advantages: where the methods differ
        stats = StepAccumulator(levels, device)
        stats.add_rollout(step_rewards(rollout.sid_codes, rollout.target_codes), adv.reward,
                          adv.step, adv.zero_var, adv.present, rollout.response_mask, mask)
        groups = [torch.nonzero(rollout.group_index == g).flatten() for g in range(len(idx))]
        chunks = [torch.cat([groups[g] for g in range(a, a + mb_groups)])
                  for a in range(0, len(idx), mb_groups)]
        seqs, att, resp = rollout.sequences, rollout.attention_mask, rollout.response_mask
        orders = [np.random.default_rng([cfg.seed, step, epoch, rank, SALT_MINIBATCH_ORDER]
                                        ).permutation(len(idx)) for epoch in range(cfg.ppo_epochs)]
        # the first minibatch of the first pass is taken at the rollout's weights: its own
        # forward is pi_old (rho = 1 exactly), so the recompute covers the other groups only
        # (none at the default of one pass over one minibatch)
        first = set(orders[0][:mb_groups].tolist()) if cfg.old_logprobs == "recompute" else set()
        rest = [g for g in range(len(idx)) if g not in first]
        with autocast():
            if cfg.old_logprobs == "recompute":
                old = batched_logprobs(inner, seqs, att, resp,
                                       [torch.cat([groups[g] for g in rest[a:a + mb_groups]])
                                        for a in range(0, len(rest), mb_groups)])
            else:
                old = torch.where(resp, rollout.old_logprobs.float(), 0.0)
            ref = (batched_logprobs(ref_module, seqs, att, resp, chunks)
                   if ref_module is not None else None)
        # ---- update
        for epoch in range(cfg.ppo_epochs):
            order = orders[epoch]
            for a in range(0, len(idx), mb_groups):
                rows = torch.cat([groups[g] for g in order[a:a + mb_groups]])
                width = int(att[rows].sum(dim=1).max().item())
                part = (rows, slice(0, width))
                part_mask = mask[part]
                local_denominator = (float(part_mask.sum().item())
                                     if cfg.aggregation_mode == "token" else float(len(rows)))
                denominator = local_denominator
                if world > 1:
                    denominator = float(reduce_sum(torch.tensor(
                        [local_denominator], dtype=torch.float64, device=device)).item())
                with autocast():
                    logp, ent = wrapped(seqs[part], att[part], resp[part], with_entropy=True)
                    if epoch == 0 and a == 0 and first:
                        old[part] = logp.detach()
                    out = policy_loss(logp, old[part], adv.token[part], part_mask,
                                      rollout.step_ids[part], levels, mode=cfg.aggregation_mode, clip_low=cfg.clip_eps,
                                      clip_high=cfg.clip_high, beta=cfg.beta,
                                      ref_logp=ref[part] if ref is not None else None,
                                      empty_steps=cfg.empty_steps, denominator=denominator)
                acc.backward(out.loss * world)
                norm = acc.clip_grad_norm_(params, clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.optimizer_steps += 1
                stats.add_update(part_mask, out.terms.kl, out.terms.clipped, ent, logp)
                stats.add("loss", out.loss)
                stats.add("grad_norm", norm.detach().double() if torch.is_tensor(norm)
                          else float(norm))
                stats.add("minibatches", 1.0)
        t_update = time.perf_counter() - t1
        # ---- log, eval, checkpoint
        state.step += 1
        state.rollout_seconds += t_rollout
        state.update_seconds += t_update
        row = {"step": state.step, "optimizer_steps": state.optimizer_steps,
               "lr": optimizer.param_groups[0]["lr"], **stats.finish(reduce_sum, world)}
        state.tokens_generated += row["response_tokens"]
        row.update(rollout_s=t_rollout, advantage_s=t_adv, update_s=t_update,
                   step_s=t_rollout + t_update,
                   tokens_per_s=row["response_tokens"] / max(t_rollout + t_update, 1e-9))
        row.update({f"rollout_{k}": float(v) for k, v in sorted(rollout.stats.items())
                    if isinstance(v, (int, float))})
        done = state.step >= cfg.steps
        if eval_set is not None and (state.step % cfg.eval_every == 0 or done):
            row.update(evaluate())
        log_rows.append(row)
        if state.step % cfg.log_every == 0 or done:
            work.write_live_log(log_rows)
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", exact=f"{row[f'reward_step{levels}']:.3f}")
        if done:
            state.completed = True
        if done or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0):
            checkpoint()
        for cb in callbacks:
            cb(StepInfo(state.step, row, model, state))
    bar.close()
    model.eval()
    last = log_rows[-1] if log_rows else {}
    summary = {"algorithm": cfg.algorithm, "steps": state.step, "optimizer_steps":
               state.optimizer_steps, "processes": world, "prompts": len(prompts),
               "prompts_per_step": cfg.prompts_per_step, "group_size": cfg.group_size,
               "aggregation": cfg.aggregation_mode, "device": acc.device.type, "bf16": bf16,
               "rollout_seconds": round(state.rollout_seconds, 3),
               "update_seconds": round(state.update_seconds, 3),
               "eval_seconds": round(state.eval_seconds, 3),
               "tokens_generated": state.tokens_generated,
               "last_reward": last.get("reward"),
               "last_exact_match": last.get(f"reward_step{levels}"),
               "last_eval": {k: v for k, v in last.items() if k.startswith("eval_")} or None}
    return RLResult(model=model, log=log_rows, summary=summary)
