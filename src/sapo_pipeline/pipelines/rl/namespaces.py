"""The RL namespaces that run: the sections of ``conf/base/parameters_rl.yml`` holding ``rl:``.

The ``rl`` and ``evaluate`` pipelines and the DVC ``rl`` stage's ``foreach`` list all come from
this one list, so an ablation (``sapo_no_norm: {rl: {<<: *rl_shared, algorithm: sapo,
step_normalised: false, work_dir: ...}}``) is one YAML entry: it is trained, evaluated, and
validated like the others; one marked ``ablation: true`` is left out of ``sapo_full`` and run by
the ``ablations`` pipeline instead. Environments override the *settings* of a namespace; the set of
namespaces is declared in ``conf/base`` (pipelines are built before an environment is chosen).
Outside a Kedro project (a notebook importing the package) the namespaces are the declared
methods, one each (:data:`sapo_pipeline.rl.methods.METHODS`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from kedro.utils import find_kedro_project

from sapo_pipeline.rl.methods import METHODS, is_ablation, rl_sections

log = logging.getLogger(__name__)
PARAMETERS_FILE = Path("conf") / "base" / "parameters_rl.yml"


def rl_namespaces(project: str | Path | None = None, *,
                  ablations: bool = False) -> tuple[str, ...]:
    """The RL namespaces of the project at ``project`` (default: the Kedro project around the
    working directory), in file order: those of ``sapo_full``, or with ``ablations`` those marked
    ``ablation: true`` (the ``ablations`` pipeline's)."""
    root = Path(project) if project is not None else find_kedro_project(Path.cwd())
    if root is None:
        log.info("no Kedro project around %s: RL namespaces = the declared methods %s",
                 Path.cwd(), list(METHODS))
        return () if ablations else tuple(METHODS)
    path = Path(root) / PARAMETERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the RL parameters that name the RL namespaces are "
                                f"missing")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    every = rl_sections(params)
    bad = [n for n in every if not n.isidentifier()]
    main = [n for n in every if not is_ablation(params[n])]
    if bad or not main:
        raise ValueError(f"{path}: RL namespaces must be identifiers and at least one must not "
                         f"be an ablation, got {every}")
    return tuple(n for n in every if is_ablation(params[n])) if ablations else tuple(main)
