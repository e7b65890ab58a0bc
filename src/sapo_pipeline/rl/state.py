"""Resume state of the RL loop, in ``RLTrainConfig.work_dir``.

Discovery, compatibility (fingerprint), tidying, the atomic checkpoint write and the live log
are :class:`sapo_pipeline.training.workdir.WorkDir`'s; :class:`RLWorkDir` only swaps in the RL
loop state and the RL log columns (:mod:`sapo_pipeline.rl.diagnostics`)::

    log.csv                        live per-step diagnostics (rl.diagnostics columns)
    checkpoint-000040/             written atomically (tmp dir + rename)
      trainable.safetensors        trainable parameters of the policy
      optimizer.pt                 AdamW state (torch.save of tensors; read with weights_only)
      scheduler.json               LambdaLR state
      rng.safetensors              torch RNG state of every process
      log.csv                      diagnostics rows up to this step
      state.json                   RLState + fingerprint -- written last (marks it complete)

The reference model is not stored: it is always the starting (stage-2) model the run was given.
"""

from __future__ import annotations

from dataclasses import dataclass

from sapo_pipeline.rl.diagnostics import csv_to_log, log_to_csv
from sapo_pipeline.training.workdir import WorkDir


@dataclass
class RLState:
    """Counters a resume restores."""

    step: int = 0
    completed: bool = False
    optimizer_steps: int = 0
    rollout_seconds: float = 0.0
    update_seconds: float = 0.0
    eval_seconds: float = 0.0
    tokens_generated: int = 0


class RLWorkDir(WorkDir):
    """Checkpoints of one RL run (see the module docstring); ``save`` takes an :class:`RLState`
    and no ``best`` weights, ``load`` returns ``best=None``."""

    state_type = RLState
    encode_log = staticmethod(log_to_csv)
    decode_log = staticmethod(csv_to_log)
