"""Stage 3: reinforcement learning with verifiable catalog rewards (GRPO, SAPO, ReRe).

* :mod:`.methods` -- every method declared once (config class, rollout kind, advantages).
* :mod:`.config` -- typed configs (``GRPOConfig``, ``SAPOConfig``, ``ReReConfig``).
* :mod:`.rewards` -- exact / prefix / per-step / ranking rewards.
* :mod:`.advantages` -- group-relative advantages per response or per step, per token.
* :mod:`.loss` -- clipped surrogate + k3 KL; step-normalised / token / sequence aggregation.
* :mod:`.trainer` -- the loop (accelerate), checkpoints and resume; :mod:`.diagnostics` -- CSV
  rows and figures; :mod:`.source` -- the ``RolloutSource`` protocol; :mod:`.prompts` -- prompts.
"""

from sapo_pipeline.rl.advantages import Advantages, group_normalise, token_advantages
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, RLTrainConfig, SAPOConfig
from sapo_pipeline.rl.loss import aggregate, clipped_objective, policy_loss
from sapo_pipeline.rl.methods import (
    METHODS,
    Method,
    RLSection,
    compute_advantages,
    method_of,
    rl_config_from_dict,
    rl_sections,
)
from sapo_pipeline.rl.rewards import (
    exact_match,
    leading_matches,
    prefix_reward,
    ranking_penalty,
    rere_reward,
    step_rewards,
)
from sapo_pipeline.rl.source import RolloutSource
from sapo_pipeline.rl.trainer import RLResult, StepInfo, train_rl

__all__ = [
    "Advantages",
    "GRPOConfig",
    "METHODS",
    "Method",
    "RLResult",
    "RLSection",
    "RLTrainConfig",
    "ReReConfig",
    "RolloutSource",
    "SAPOConfig",
    "StepInfo",
    "aggregate",
    "clipped_objective",
    "compute_advantages",
    "exact_match",
    "group_normalise",
    "leading_matches",
    "method_of",
    "policy_loss",
    "prefix_reward",
    "ranking_penalty",
    "rere_reward",
    "rl_config_from_dict",
    "rl_sections",
    "step_rewards",
    "token_advantages",
    "train_rl",
]
