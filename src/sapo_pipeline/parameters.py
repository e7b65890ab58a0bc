"""The typed parameter sections of every pipeline, and their validation.

Each top-level key of a ``conf/*/parameters_<pipeline>.yml`` maps to one config dataclass.
:func:`validate_parameters` builds them all from Kedro's merged parameters (runtime
``--params`` included) so that a typo or an out-of-range value fails before the first node.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from sapo_pipeline.config_utils import from_dict

#: parameters key -> "module:ConfigClass" (imported lazily: some pull in torch).
SECTIONS: dict[str, str] = {
    "ingest": "sapo_pipeline.data.config:IngestConfig",
    "sid_catalog": "sapo_pipeline.sid.config:SIDCatalogConfig",
    "teacher_corpus": "sapo_pipeline.teacher.config:TeacherCorpusConfig",
    "align": "sapo_pipeline.model.sft_config:AlignConfig",
    "reason": "sapo_pipeline.model.sft_config:ReasonConfig",
    "evaluate": "sapo_pipeline.evaluation.config:EvaluateConfig",
    # classic baselines: one section per namespace (the nodes read params:<name>.baseline)
    "popularity": "sapo_pipeline.baselines.registry:BaselineSection",
    "sasrec": "sapo_pipeline.baselines.registry:BaselineSection",
}
#: Stage 3: every other top-level section holding ``rl:`` is an RL namespace (grpo, sapo, rere,
#: ablations; the rl pipeline reads params:<namespace>.rl), validated by this class.
RL_SECTION = "sapo_pipeline.rl.methods:RLSection"


def config_class(section: str) -> type:
    """The config dataclass of a parameters section (an unknown name: an RL namespace)."""
    module, _, name = SECTIONS.get(section, RL_SECTION).partition(":")
    return getattr(importlib.import_module(module), name)


def load_section(section: str, params: Mapping[str, Any]) -> Any:
    """Build the typed config of ``section`` from its parameter dict."""
    return from_dict(config_class(section), params, section)


def validate_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Build every known section and every RL namespace present in ``params``; raise
    ConfigError on the first problem."""
    from sapo_pipeline.rl.methods import rl_sections

    names = [key for key in SECTIONS if key in params]
    names += [key for key in rl_sections(params) if key not in SECTIONS]
    return {key: load_section(key, params[key]) for key in names}
