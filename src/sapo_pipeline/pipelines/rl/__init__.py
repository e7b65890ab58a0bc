"""``rl``: Stage 3, one namespaced copy per RL namespace of ``parameters_rl.yml`` (grpo, sapo,
rere, ablations), all from the stage-2 model."""

from sapo_pipeline.pipelines.rl.namespaces import rl_namespaces
from sapo_pipeline.pipelines.rl.pipeline import base_pipeline, create_pipeline

__all__ = ["base_pipeline", "create_pipeline", "rl_namespaces"]
