"""Typed configuration of the two supervised fine-tuning stages (METHOD.md §2).

* :class:`TrainConfig` -- the training loop shared by both stages (``sapo_pipeline.model.sft``).
* :class:`SidEvalConfig` -- the valid-split SID accuracy check run after a stage
  (``sapo_pipeline.model.sid_eval``).
* :class:`AlignConfig` (parameters key ``align``) -- Stage 1, SID-language alignment: tokenizer,
  backbone, training, evaluation.
* :class:`ReasonConfig` (parameters key ``reason``) -- Stage 2, reasoning activation: starts from
  Stage 1's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.config_utils import check_choice, check_positive
from sapo_pipeline.model.backbone_config import BackboneConfig
from sapo_pipeline.model.tokenizer import TokenizerConfig
from sapo_pipeline.teacher.prompts import PROMPT_RESPONSE_SEP, REASONING_TASK
from sapo_pipeline.training import fields as common
from sapo_pipeline.training.launch import LauncherConfig

BATCHING_MODES = ("bucket", "pack", "random")
OVERLONG_POLICIES = ("skip", "error")
EVAL_LAYOUTS = ("sid", "reasoning")
SPLITS = ("train", "valid")
SID_INITS = ("random", "codebook")






@dataclass
class TrainConfig:
    """The SFT loop: optimisation, batching, evaluation, checkpoints and logging."""

    epochs: int = field(default=3, metadata={"help": "Passes over the train split (upper bound)."})
    max_steps: int | None = field(
        default=None,
        metadata={"help": "Stop after this many optimizer steps (null: epochs decide). The "
                          "cosine schedule spans min(max_steps, epochs * steps_per_epoch)."},
    )
    batch_size: int = field(
        default=16, metadata={"help": "Examples per process per micro-batch."}
    )
    grad_accum: int = field(
        default=1,
        metadata={"help": "Micro-batches per optimizer step; global batch = batch_size * "
                          "grad_accum * processes."},
    )
    lr: float = common.lr(1e-3)
    betas: tuple[float, float] = common.betas((0.9, 0.95))
    weight_decay: float = common.weight_decay(0.01)
    adam_eps: float = common.adam_eps()
    warmup_ratio: float = field(
        default=0.05, metadata={"help": "Linear warm-up length as a share of the total steps."}
    )
    warmup_steps: int | None = field(
        default=None, metadata={"help": "Linear warm-up length in steps (overrides warmup_ratio)."}
    )
    min_lr_ratio: float = field(
        default=0.1, metadata={"help": "Cosine decay floor as a fraction of lr."}
    )
    max_grad_norm: float | None = common.max_grad_norm()
    autocast: str = common.autocast()
    max_length: int = field(
        default=512,
        metadata={"help": "Longest training sequence (prompt + response + eos); longer prompts "
                          "are cut from the left, the response is never cut."},
    )
    prompt_separator: str = field(
        default=PROMPT_RESPONSE_SEP,
        metadata={"help": "Text appended to every prompt before tokenisation (the corpus joins "
                          "prompt and response with it); part of the prompt, so never labelled."},
    )
    overlong: str = field(
        default="skip",
        metadata={"help": "Rows whose response + eos alone exceed max_length: skip (counted and "
                          "listed in the stage summary) | error."},
    )
    batching: str = field(
        default="bucket",
        metadata={"help": "bucket (sort by length inside shuffled mega-batches, pad to the "
                          "longest) | pack (concatenate a micro-batch into rows with restarting "
                          "position ids, block-diagonal attention) | random (plain shuffle)."},
    )
    bucket_size: int = field(
        default=32, metadata={"help": "Optimizer-step batches per length-sorted mega-batch."}
    )
    pack_length: int | None = field(
        default=None, metadata={"help": "Row length for batching=pack (null: max_length)."}
    )
    pad_to_multiple_of: int = field(
        default=1, metadata={"help": "Pad batch length up to a multiple of this."}
    )
    selective_head: bool = field(
        default=True,
        metadata={"help": "Apply the output head only at labelled positions (prompt tokens "
                          "need no logits); off = full logits as the model computes them."},
    )
    eval_every: int = field(
        default=200, metadata={"help": "Valid loss every this many steps (0: only at the end)."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Examples per valid-loss batch."})
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "Cap on valid examples for the valid loss (null: all)."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a valid-loss improvement "
                          "(null: never stop early)."},
    )
    early_stopping_min_delta: float = field(
        default=0.0, metadata={"help": "An improvement must lower the valid loss by more than this."}
    )
    load_best_at_end: bool = field(
        default=True,
        metadata={"help": "End with the weights of the best valid loss (else the last step)."},
    )
    checkpoint_every: int = field(
        default=200,
        metadata={"help": "Save the resume state every this many steps (0: only at the end)."},
    )
    save_total_limit: int = common.save_total_limit()
    log_every: int = field(
        default=10, metadata={"help": "A row of the training log every this many steps."}
    )
    seed: int = common.seed("Seed of model init, data order and dropout.")
    work_dir: str = common.work_dir("data/06_models/sft_work")
    resume: str = common.resume()
    device: str = common.device()
    num_threads: int | None = common.num_threads()
    progress_bar: bool = common.progress_bar()

    def __post_init__(self) -> None:
        o = "TrainConfig"
        common.check_optimiser(o, self)
        common.check_run(o, self)
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size", "log_every",
                     "bucket_size", "pad_to_multiple_of"):
            check_positive(o, name, getattr(self, name))
        for name in ("max_steps", "pack_length", "max_eval_examples", "early_stopping_patience"):
            check_positive(o, name, getattr(self, name), allow_none=True)
        check_positive(o, "max_length", self.max_length)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"{o}.warmup_ratio={self.warmup_ratio}: must be in [0, 1)")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"{o}.warmup_steps={self.warmup_steps}: must be >= 0")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError(f"{o}: eval_every and checkpoint_every must be >= 0")
        if self.early_stopping_min_delta < 0:
            raise ValueError(f"{o}.early_stopping_min_delta must be >= 0")
        check_choice(o, "batching", self.batching, BATCHING_MODES)
        check_choice(o, "overlong", self.overlong, OVERLONG_POLICIES)
        if self.pack_length is not None and self.pack_length < self.max_length:
            raise ValueError(
                f"{o}.pack_length={self.pack_length}: must be >= max_length={self.max_length}"
            )


@dataclass
class SidEvalConfig:
    """Greedy, trie-constrained SID generation on the valid split after a stage."""

    enabled: bool = field(default=True, metadata={"help": "Run the evaluation."})
    task: str = field(
        default="sid_sequence",
        metadata={"help": "Corpus task whose valid rows are scored (history SIDs -> next SID, "
                          "sid_sequence or seq_sid, for Stage 1; the reasoning task for "
                          "Stage 2)."},
    )
    layout: str = field(
        default="sid",
        metadata={"help": "sid (the response is the SID) | reasoning (<think> z_k </think> "
                          "before each SID token)."},
    )
    max_examples: int | None = field(
        default=1000, metadata={"help": "Seeded random subset of this many rows (null: all)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Prompts decoded together."})
    think_max_tokens: int = field(
        default=48,
        metadata={"help": "Cap on a thinking block's free tokens; at the cap </think> is forced."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the evaluated subset."})

    def __post_init__(self) -> None:
        o = "SidEvalConfig"
        check_choice(o, "layout", self.layout, EVAL_LAYOUTS)
        check_positive(o, "batch_size", self.batch_size)
        check_positive(o, "think_max_tokens", self.think_max_tokens)
        check_positive(o, "max_examples", self.max_examples, allow_none=True)
        if not self.task:
            raise ValueError(f"{o}.task: required")


def stage_train(**overrides: Any) -> TrainConfig:
    """The training loop of a pipeline stage (what ``align.train`` / ``reason.train`` default to):
    the loop's defaults plus the evaluation, early-stopping, checkpoint and logging cadence of a
    stage of some hundred steps, and ``overrides``."""
    cadence = {"eval_every": 500, "max_eval_examples": 2000, "early_stopping_patience": 3,
               "checkpoint_every": 500, "log_every": 20}
    return TrainConfig(**{**cadence, **overrides})


def _check_tasks(owner: str, tasks: list[str] | None) -> list[str] | None:
    if tasks is None:
        return None
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise ValueError(f"{owner}.tasks={tasks!r}: a non-empty list of task names, or null")
    return tasks


@dataclass
class AlignConfig:
    """Stage 1: SID-language alignment (multi-task SFT, loss on the response tokens only)."""

    tasks: list[str] | None = field(
        default=None, metadata={"help": "Corpus tasks trained on (null: every task)."}
    )
    tokenizer: TokenizerConfig = field(
        default_factory=TokenizerConfig,
        metadata={"help": "BPE tokenizer trained on the corpora (backbone.kind=scratch)."},
    )
    tokenizer_splits: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={"help": "Corpus splits whose prompts and responses train the tokenizer."},
    )
    codebook_size: int | None = field(
        default=None,
        metadata={"help": "SID tokens per level (null: the largest code in sid_table + 1, per "
                          "level)."},
    )
    backbone: BackboneConfig = field(
        default_factory=BackboneConfig, metadata={"help": "The causal LM (scratch or pretrained)."}
    )
    sid_init: str = field(
        default="random",
        metadata={"help": "SID token embeddings at the start: random (the backbone's init) | "
                          "codebook (each token's code vector from sid_quantizer, mapped to the "
                          "hidden size; sapo_pipeline.model.sid_embeddings)."},
    )
    train: TrainConfig = field(
        default_factory=lambda: stage_train(epochs=4, batch_size=32,
                                            work_dir="data/06_models/align_work"),
        metadata={"help": "Training loop settings (CPU default: 4 epochs, ~960 steps)."},
    )
    eval: SidEvalConfig = field(
        default_factory=lambda: SidEvalConfig(max_examples=500),
        metadata={"help": "Valid SID accuracy after the stage."},
    )
    launcher: LauncherConfig = field(
        default_factory=LauncherConfig,
        metadata={"help": "How the node trains: in its own process (num_processes 1) or "
                          "launched on several with accelerate / torchrun."},
    )

    def __post_init__(self) -> None:
        self.tasks = _check_tasks("AlignConfig", self.tasks)
        bad = [s for s in self.tokenizer_splits if s not in SPLITS]
        if bad or not self.tokenizer_splits:
            raise ValueError(
                f"AlignConfig.tokenizer_splits={self.tokenizer_splits!r}: non-empty, from {SPLITS}"
            )
        check_positive("AlignConfig", "codebook_size", self.codebook_size, allow_none=True)
        if self.sid_init not in SID_INITS:
            raise ValueError(f"AlignConfig.sid_init={self.sid_init!r}: one of {SID_INITS}")


@dataclass
class ReasonConfig:
    """Stage 2: reasoning activation (SFT on teacher traces in the step-aligned layout)."""

    tasks: list[str] | None = field(
        default=None, metadata={"help": "Corpus tasks trained on (null: every task)."}
    )
    train: TrainConfig = field(
        default_factory=lambda: stage_train(epochs=1, lr=5e-4, max_length=768,
                                            eval_batch_size=32,
                                            work_dir="data/06_models/reason_work"),
        metadata={"help": "Training loop settings (CPU default: 1 epoch of the traces)."},
    )
    eval: SidEvalConfig = field(
        default_factory=lambda: SidEvalConfig(task=REASONING_TASK, layout="reasoning",
                                              max_examples=200),
        metadata={"help": "Valid SID accuracy after the stage."},
    )
    replay_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "Stage-1 alignment-corpus tasks whose train rows are mixed into "
                          "Stage 2 (replay, e.g. [sid_sequence]) so that Stage 2 keeps the "
                          "next-SID skill Stage 1 learned; [] trains on the reasoning corpus "
                          "only."},
    )
    replay_max_rows: int | None = field(
        default=None,
        metadata={"help": "Seeded subset of the replayed train rows (null: all of them)."},
    )
    launcher: LauncherConfig = field(
        default_factory=LauncherConfig,
        metadata={"help": "How the node trains: in its own process (num_processes 1) or "
                          "launched on several with accelerate / torchrun."},
    )

    def __post_init__(self) -> None:
        self.tasks = _check_tasks("ReasonConfig", self.tasks)
        self.replay_tasks = list(self.replay_tasks or [])
        if not all(isinstance(t, str) and t for t in self.replay_tasks):
            raise ValueError(f"ReasonConfig.replay_tasks={self.replay_tasks!r}: task names")
        check_positive("ReasonConfig", "replay_max_rows", self.replay_max_rows, allow_none=True)
