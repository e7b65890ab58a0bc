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


def section_defaults(section: str) -> Any:
    """The defaults of ``section``: a pipeline section, a baseline kind or an RL method."""
    from sapo_pipeline.baselines.registry import KINDS
    from sapo_pipeline.rl.methods import METHODS

    if section in METHODS:
        return METHODS[section].config()
    if section in KINDS:
        return KINDS[section].config()
    if section in SECTIONS and section not in KINDS:
        return from_dict(config_class(section), {}, section)
    raise ValueError(f"unknown section {section!r}; one of "
                     f"{sorted({*SECTIONS, *METHODS, *KINDS})}")


def main(argv: list[str] | None = None) -> int:
    """``python -m sapo_pipeline.parameters <section>``: every parameter of a section with its
    default and help (the YAML files list only what users usually change)."""
    import argparse
    import sys

    from sapo_pipeline.config_utils import describe

    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.parameters",
                                     description=main.__doc__)
    parser.add_argument("section", help="align, reason, evaluate, ingest, sid_catalog, "
                                        "teacher_corpus, an RL method (grpo, sapo, rere) or a "
                                        "baseline kind (popularity, sasrec)")
    args = parser.parse_args(argv)
    try:
        config = section_defaults(args.section)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write("\n".join(describe(config, f"{args.section}.")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
