"""Typed configuration of Stage 3 (RL), one dataclass per algorithm (TRL style).

* :class:`RLTrainConfig` -- the loop every algorithm shares: prompts, sampling, PPO-style update,
  KL to the frozen reference, group statistics, checkpoints, logging.
* :class:`GRPOConfig` -- outcome GRPO (exact or prefix reward, one advantage per response).
* :class:`SAPOConfig` -- step-aligned SAPO (a reward and an advantage per SID step, optionally
  step-normalised aggregation); its two switches give the paper's ablations.
* :class:`ReReConfig` -- ReRe-style: beam rollouts, exact match + a ranking penalty.

Parameters name the algorithm with ``algorithm: grpo | sapo | rere`` beside the fields; the
methods are declared in :mod:`sapo_pipeline.rl.methods` (``rl_config_from_dict``), so a namespace
such as ``sapo_no_step_adv`` can hold any variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from sapo_pipeline.config_utils import check_choice, check_positive
from sapo_pipeline.training import fields as common
from sapo_pipeline.training.launch import LauncherConfig

STD_MODES = ("sample", "population")
EMPTY_STEP_MODES = ("count", "skip")
OLD_LOGPROB_MODES = ("recompute", "rollout")
OUTCOME_AGGREGATIONS = ("token", "sequence")
GRPO_REWARDS = ("exact", "prefix")
SAPO_REWARDS = ("prefix_conditioned", "independent")
PENALTY_NORMALISATIONS = ("all_ranks", "wrong_beams", "none")


@dataclass
class RLTrainConfig:
    """The RL loop shared by every algorithm (see ``sapo_pipeline.rl.trainer``)."""

    ALGORITHM: ClassVar[str] = "base"

    # ---- schedule and batch
    steps: int = field(default=16, metadata={"help": "RL steps (one rollout + its update each); "
                                              "a CPU default, raise it with a GPU."})
    prompts_per_step: int = field(
        default=8,
        metadata={"help": "Prompts per RL step over all processes (divisible by the process "
                          "count); each gets a group of group_size responses."},
    )
    group_size: int = field(
        default=8, metadata={"help": "G: responses per prompt (beams for ReRe). 16 in the paper."}
    )
    ppo_epochs: int = field(
        default=1, metadata={"help": "Passes of the update over one rollout."}
    )
    minibatch_groups: int | None = field(
        default=None,
        metadata={"help": "Whole groups per minibatch per process (one optimizer step each); "
                          "must divide the process's groups per step. null: all in one."},
    )
    # ---- optimiser
    lr: float = common.lr(2e-5)
    betas: tuple[float, float] = common.betas((0.9, 0.99))
    weight_decay: float = common.weight_decay(0.0)
    adam_eps: float = common.adam_eps()
    warmup_steps: int = field(
        default=0, metadata={"help": "Linear warm-up length in optimizer steps."}
    )
    min_lr_ratio: float = field(
        default=1.0,
        metadata={"help": "Cosine floor as a fraction of lr after warm-up (1.0: constant lr)."},
    )
    max_grad_norm: float | None = common.max_grad_norm()
    # ---- objective
    clip_eps: float = field(
        default=0.2, metadata={"help": "e_low: the ratio is clipped below at 1 - clip_eps."}
    )
    clip_eps_high: float | None = field(
        default=None,
        metadata={"help": "e_high: the ratio is clipped above at 1 + clip_eps_high (null: "
                          "clip_eps, symmetric)."},
    )
    beta: float = field(
        default=0.04,
        metadata={"help": "Weight of the per-token k3 KL to the frozen stage-2 reference model "
                          "(0: no reference model is kept)."},
    )
    advantage_eps: float = field(
        default=1e-4, metadata={"help": "eps in (r - mean_G r) / (std_G r + eps)."}
    )
    negative_weight: float = field(
        default=1.0,
        metadata={"help": "Scale of negative advantages, after the method's rule (1.0: as the "
                          "method defines them; 0: positive reinforcement only; between: "
                          "weighted). A low weight keeps a sparse-reward update from being "
                          "mostly the push-down of failed responses."},
    )
    think_loss: bool = field(
        default=True,
        metadata={"help": "Thinking tokens carry their step's advantage (the method as "
                          "published). false: only the decisions do (SID tokens, </think>, eos); "
                          "the thinking tokens get advantage 0 but still count in the loss's "
                          "means and the KL, so a decision's weight is unchanged."},
    )
    std: str = field(
        default="sample",
        metadata={"help": "Group std: sample (Bessel, divides by G - 1; as torch.std and TRL's "
                          "GRPO) | population (divides by G)."},
    )
    empty_steps: str = field(
        default="count",
        metadata={"help": "Step-normalised loss, a step with no loss-carrying token (all forced): "
                          "count (it adds 0 and 1/K keeps K = SID levels) | skip (1/K uses the "
                          "response's non-empty steps)."},
    )
    old_logprobs: str = field(
        default="recompute",
        metadata={"help": "pi_old of the ratio: recompute (the first minibatch's own forward, "
                          "detached, and one no-grad forward over the other groups before the "
                          "update; same numerics as the update) | rollout (the sampler's "
                          "Rollout.old_logprobs, which must then be at `temperature`)."},
    )
    # ---- sampling
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature; log-probabilities of the loss use logits / "
                          "temperature too (pi_theta, pi_old and pi_ref alike)."},
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (1.0: off)."})
    think_temperature: float | None = field(
        default=None,
        metadata={"help": "Sampling temperature of the free thinking text (null: `temperature`; "
                          "0: greedy blocks, as the evaluation's step-wise beam search writes "
                          "them, so a group's responses differ in their SID choices). The "
                          "loss's log-probabilities stay at `temperature`."},
    )
    max_think_tokens: int = field(
        default=48,
        metadata={"help": "Cap on a thinking block's sampled tokens; at the cap </think> is "
                          "forced (and carries no loss)."},
    )
    min_think_tokens: int = field(
        default=1,
        metadata={"help": "Free tokens a thinking block needs before </think> may be chosen."},
    )
    reasoning: bool = field(
        default=True,
        metadata={"help": "Step-aligned layout with thinking blocks (the stage-2 model); false: "
                          "plain SID tokens then eos (steps = one SID token each)."},
    )
    rollout_batch_size: int = field(
        default=8, metadata={"help": "Prompts per prefill batch of the sampler / beam search."}
    )
    # ---- prompts
    prompt_split: str = field(
        default="train", metadata={"help": "Samples split the RL prompts come from."}
    )
    max_prompts: int | None = field(
        default=None, metadata={"help": "Seeded random subset of this many train prompts."}
    )
    prompt_task: str = field(
        default="reasoning",
        metadata={"help": "Prompt template (teacher_corpus.prompts.templates) the prompts are "
                          "rendered with: the task the stage-2 model was trained on."},
    )
    prompt_separator: str = field(
        default=" ",
        metadata={"help": "Appended to every prompt before tokenisation, as in SFT (the corpus "
                          "joins prompt and response with it)."},
    )
    max_prompt_tokens: int = field(
        default=512, metadata={"help": "Prompts longer than this lose tokens from the left."}
    )
    # ---- evaluation, checkpoints, logging
    eval_every: int = field(
        default=8,
        metadata={"help": "Valid reward every this many steps and at the end (0: never)."},
    )
    eval_prompts: int = field(
        default=32, metadata={"help": "Valid prompts evaluated (seeded subset, fixed)."}
    )
    eval_group_size: int = field(
        default=1, metadata={"help": "Sampled responses per valid prompt."}
    )
    eval_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the valid rollouts."}
    )
    eval_num_beams: int = field(
        default=10, metadata={"help": "Valid NDCG/Recall@B of the eval prompts by trie-constrained "
                                      "(step-wise) beam search, as evaluate decodes (0: off)."}
    )
    checkpoint_every: int = field(
        default=8,
        metadata={"help": "Save the resume state every this many steps (0: only at the end)."},
    )
    save_total_limit: int = common.save_total_limit()
    log_every: int = field(
        default=1,
        metadata={"help": "Rewrite the live log CSV every this many steps (every step gets a "
                          "row regardless)."},
    )
    seed: int = common.seed("Seeds the prompt order, the rollouts and the minibatches.")
    work_dir: str = common.work_dir("data/06_models/rl_work")
    resume: str = common.resume()
    device: str = common.device()
    autocast: str = common.autocast()
    num_threads: int | None = common.num_threads()
    progress_bar: bool = common.progress_bar()
    launcher: LauncherConfig = field(
        default_factory=LauncherConfig,
        metadata={"help": "How the node trains: in its own process (num_processes 1) or "
                          "launched on several with accelerate / torchrun; each process "
                          "samples and trains prompts_per_step / num_processes whole groups."},
    )

    def __post_init__(self) -> None:
        o = type(self).__name__
        if self.prompts_per_step % self.launcher.num_processes:
            raise ValueError(f"{o}.prompts_per_step={self.prompts_per_step} is not divisible by "
                             f"launcher.num_processes={self.launcher.num_processes} (every "
                             "process trains whole groups)")
        common.check_optimiser(o, self)
        common.check_run(o, self)
        for name in ("steps", "prompts_per_step", "group_size", "ppo_epochs",
                     "max_prompt_tokens", "max_think_tokens", "eval_prompts", "eval_group_size",
                     "log_every", "temperature", "eval_temperature", "advantage_eps",
                     "rollout_batch_size"):
            check_positive(o, name, getattr(self, name))
        if isinstance(self.eval_num_beams, bool) or self.eval_num_beams < 0:
            raise ValueError(f"{o}.eval_num_beams={self.eval_num_beams!r}: must be >= 0")
        for name in ("minibatch_groups", "max_prompts", "clip_eps_high"):
            check_positive(o, name, getattr(self, name), allow_none=True)
        if self.group_size < 2:
            raise ValueError(f"{o}.group_size={self.group_size}: a group needs >= 2 responses")
        if not 0.0 < self.clip_eps < 1.0:
            raise ValueError(f"{o}.clip_eps={self.clip_eps}: must be in (0, 1)")
        check_positive(o, "beta", self.beta, allow_zero=True)
        if not isinstance(self.think_loss, bool):
            raise ValueError(f"{o}.think_loss={self.think_loss!r}: must be a boolean")
        if isinstance(self.negative_weight, bool) or not 0.0 <= self.negative_weight <= 1.0:
            raise ValueError(f"{o}.negative_weight={self.negative_weight!r}: must be in [0, 1]")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"{o}.top_p={self.top_p}: must be in (0, 1]")
        if self.think_temperature is not None and (isinstance(self.think_temperature, bool)
                                                   or self.think_temperature < 0):
            raise ValueError(f"{o}.think_temperature={self.think_temperature!r}: must be >= 0 "
                             "(or null)")
        if not 0 <= self.min_think_tokens <= self.max_think_tokens:
            raise ValueError(f"{o}: need 0 <= min_think_tokens={self.min_think_tokens} <= "
                             f"max_think_tokens={self.max_think_tokens}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{o}.{name}={getattr(self, name)}: must be >= 0")
        check_choice(o, "std", self.std, STD_MODES)
        check_choice(o, "empty_steps", self.empty_steps, EMPTY_STEP_MODES)
        check_choice(o, "old_logprobs", self.old_logprobs, OLD_LOGPROB_MODES)
        check_choice(o, "prompt_split", self.prompt_split, ("train", "valid"))
        if self.prompts_per_step < 1:
            raise ValueError(f"{o}.prompts_per_step must be >= 1")
        if not self.work_dir:
            raise ValueError(f"{o}.work_dir: required")
        if not self.prompt_task:
            raise ValueError(f"{o}.prompt_task: required")

    @property
    def algorithm(self) -> str:
        return self.ALGORITHM

    @property
    def clip_high(self) -> float:
        return self.clip_eps if self.clip_eps_high is None else self.clip_eps_high

    @property
    def aggregation_mode(self) -> str:
        """How the per-token objective is averaged: step | token | sequence (loss.aggregate)."""
        raise NotImplementedError


@dataclass
class GRPOConfig(RLTrainConfig):
    """Outcome GRPO: one reward and one group-relative advantage per response."""

    ALGORITHM: ClassVar[str] = "grpo"

    reward: str = field(
        default="exact",
        metadata={"help": "exact (1[s_i = s*]) | prefix (prefix_weights[m - 1] for m leading "
                          "levels matched, 0 for none)."},
    )
    prefix_weights: tuple[float, ...] | None = field(
        default=None,
        metadata={"help": "Reward for 1..K leading levels matched (null: 2^(m - K), i.e. 0.25 / "
                          "0.5 / 1.0 for K = 3)."},
    )
    aggregation: str = field(
        default="token",
        metadata={"help": "token (mean over every loss-carrying token of the batch) | sequence "
                          "(mean per response, then over responses)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("GRPOConfig", "reward", self.reward, GRPO_REWARDS)
        check_choice("GRPOConfig", "aggregation", self.aggregation, OUTCOME_AGGREGATIONS)
        if self.prefix_weights is not None:
            self.prefix_weights = tuple(float(w) for w in self.prefix_weights)
            if not self.prefix_weights:
                raise ValueError("GRPOConfig.prefix_weights: empty list (use null for default)")

    @property
    def aggregation_mode(self) -> str:
        return self.aggregation


@dataclass
class SAPOConfig(RLTrainConfig):
    """SAPO: per-step rewards and advantages, step-normalised aggregation.

    Ablations: step_advantage=false (outcome advantage of the exact match + step normalisation),
    step_normalised=false (per-step advantages + token mean), both false (= plain GRPO, exact).
    """

    ALGORITHM: ClassVar[str] = "sapo"

    reward: str = field(
        default="prefix_conditioned",
        metadata={"help": "Per-step reward: prefix_conditioned (r_ik = prod_{j<=k} 1[s_ij = "
                          "s*_j]) | independent (r_ik = 1[s_ik = s*_k], ablation)."},
    )
    step_advantage: bool = field(
        default=True,
        metadata={"help": "A separate group-relative advantage per step (else the outcome "
                          "advantage of the exact match r_iK on every step)."},
    )
    step_normalised: bool = field(
        default=True,
        metadata={"help": "Average tokens within a step, steps within a response, responses "
                          "in the batch (else the token mean of GRPO)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("SAPOConfig", "reward", self.reward, SAPO_REWARDS)
        for name in ("step_advantage", "step_normalised"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SAPOConfig.{name}={getattr(self, name)!r}: must be a boolean")

    @property
    def aggregation_mode(self) -> str:
        return "step" if self.step_normalised else "token"


@dataclass
class ReReConfig(RLTrainConfig):
    """ReRe-style: G beams of constrained beam search; exact match + ranking penalty.

    A wrong beam of rank r (0-based, best first) gets ``penalty_weight * p_r`` with
    ``p_r = -(1 / log2(r + 2)) / Z``; Z by ``penalty_normalisation``: all_ranks (Z = sum over
    ranks 0..G-1 of 1 / log2(r + 2), so the penalties of a full group sum to -1, as in the
    MiniOneRec/ReRe reference code) | wrong_beams (Z = the same sum over the group's wrong beams
    only, so they always sum to -1) | none (Z = 1). Only in groups with at least one hit unless
    penalty_only_with_hit is false.
    """

    ALGORITHM: ClassVar[str] = "rere"

    penalty_weight: float = field(
        default=1.0, metadata={"help": "Scale of the ranking penalty (0: exact match only)."}
    )
    penalty_normalisation: str = field(
        default="all_ranks", metadata={"help": "all_ranks | wrong_beams | none (class doc)."}
    )
    penalty_only_with_hit: bool = field(
        default=True,
        metadata={"help": "Apply the penalty only in groups where some beam hit the target."},
    )
    aggregation: str = field(
        default="token", metadata={"help": "token | sequence (as GRPOConfig.aggregation)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.penalty_weight < 0:
            raise ValueError(f"ReReConfig.penalty_weight={self.penalty_weight}: must be >= 0")
        check_choice("ReReConfig", "penalty_normalisation", self.penalty_normalisation,
                PENALTY_NORMALISATIONS)
        check_choice("ReReConfig", "aggregation", self.aggregation, OUTCOME_AGGREGATIONS)
        if self.temperature != 1.0:
            raise ValueError(f"ReReConfig.temperature={self.temperature}: beams are not sampled "
                             "and record temperature-1 log-probabilities; keep 1.0")

    @property
    def aggregation_mode(self) -> str:
        return self.aggregation
