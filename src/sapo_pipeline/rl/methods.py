"""The RL methods, each declared once: its config class, rollout kind and advantage rule.

Every place that depends on the method asks :data:`METHODS` (through :func:`method_of` or
:func:`rl_config_from_dict`): the parameters (``algorithm: grpo | sapo | rere``), the rollout
source (sampled groups or ranked beams), the trainer's rollout checks and the advantages. Adding
a method is one :class:`Method` entry here, its config class in :mod:`~.config` and its
advantage function in :mod:`~.advantages`.

The *namespaces* that run (``grpo``, ``sapo``, an ablation such as ``sapo_no_norm``) are the
top-level sections of ``parameters_rl.yml`` holding an ``rl:`` mapping
(:func:`rl_sections`); any number of namespaces can share one method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sapo_pipeline.config_utils import from_tagged_dict
from sapo_pipeline.rl import advantages as A
from sapo_pipeline.rl.config import GRPOConfig, ReReConfig, RLTrainConfig, SAPOConfig

ROLLOUT_KINDS = ("sample", "beam")


@dataclass(frozen=True)
class Method:
    """One RL method."""

    name: str  # the ``algorithm`` value in the parameters
    config: type[RLTrainConfig]
    rollout: str  # "sample": G sampled responses per prompt | "beam": the G ranked beams
    advantages: Callable[..., A.Advantages]  # (cfg, rollout, loss_mask) -> Advantages

    def __post_init__(self) -> None:
        if self.rollout not in ROLLOUT_KINDS:
            raise ValueError(f"Method {self.name}: rollout={self.rollout!r}, expected one of "
                             f"{ROLLOUT_KINDS}")
        if self.config.ALGORITHM != self.name:
            raise ValueError(f"Method {self.name}: {self.config.__name__}.ALGORITHM is "
                             f"{self.config.ALGORITHM!r}")

    @property
    def needs_beam_rank(self) -> bool:
        return self.rollout == "beam"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("grpo", GRPOConfig, "sample", A.grpo_advantages),
    Method("sapo", SAPOConfig, "sample", A.sapo_advantages),
    Method("rere", ReReConfig, "beam", A.rere_advantages),
)}


def method_of(cfg: RLTrainConfig) -> Method:
    """The :class:`Method` of a config instance."""
    method = METHODS.get(cfg.ALGORITHM)
    if method is None or not isinstance(cfg, method.config):
        raise TypeError(f"no RL method for {type(cfg).__name__} (known: {list(METHODS)})")
    return method


def compute_advantages(cfg: RLTrainConfig, rollout: Any, loss_mask: Any = None) -> A.Advantages:
    """Rewards and token advantages of ``rollout`` (a :class:`~sapo_pipeline.decoding.Rollout`)
    by the method of ``cfg``; ``loss_mask`` defaults to ``rollout.sampled_mask``. Negative
    advantages are then scaled by ``cfg.negative_weight`` (any method)."""
    method = method_of(cfg)
    mask = rollout.sampled_mask if loss_mask is None else loss_mask
    adv = method.advantages(cfg, rollout, mask)
    if cfg.negative_weight != 1.0:
        adv = A.weight_negatives(adv, cfg.negative_weight)
    return adv


def rl_config_from_dict(data: Mapping[str, Any] | RLTrainConfig, where: str = "rl") -> Any:
    """The method's config from a parameter dict holding ``algorithm`` and its fields."""
    if isinstance(data, RLTrainConfig):
        return data
    classes = {name: m.config for name, m in METHODS.items()}
    return from_tagged_dict(data, "algorithm", classes, where)[1]


def rl_sections(params: Mapping[str, Any]) -> list[str]:
    """The RL namespaces of a parameters mapping, in order: top-level keys (not starting with
    ``_``, which marks YAML anchors) whose value is a mapping with an ``rl`` entry."""
    return [k for k, v in params.items()
            if not str(k).startswith("_") and isinstance(v, Mapping) and "rl" in v]


def is_ablation(section: Any) -> bool:
    """Whether a ``parameters_rl.yml`` section is marked ``ablation: true``."""
    return isinstance(section, Mapping) and section.get("ablation") is True


@dataclass
class RLSection:
    """One namespace of ``parameters_rl.yml`` (``grpo:``, ``sapo:``, ``rere:``, ...): ``rl``."""

    rl: Any = field(
        default=None,
        metadata={"help": "The method's config: ``algorithm`` + the fields of its class."},
    )
    ablation: bool = field(
        default=False,
        metadata={"help": "An ablation: trained and reported by the ``ablations`` pipeline "
                          "(against SAPO, GRPO and the Stage-2 model of the same run root), "
                          "left out of ``sapo_full``."},
    )

    def __post_init__(self) -> None:
        if self.rl is None:
            raise ValueError("rl: required (a mapping with `algorithm` and its fields)")
        if not isinstance(self.ablation, bool):
            raise ValueError(f"ablation={self.ablation!r}: must be a boolean")
        self.rl = rl_config_from_dict(self.rl, "rl")
