"""The library's layers: imports go one way (README, Layout), and no library package imports Kedro.

Every ``import`` / ``from ... import`` of ``sapo_pipeline`` modules is read from the source (lazy
imports inside functions included), so a new upward import fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sapo_pipeline"
#: Lowest first; a package may import its own layer's and lower layers' packages only.
LAYERS = [
    {"config_utils", "io_utils", "provenance"},
    {"data", "sid"},
    {"teacher"},
    {"decoding"},
    {"training"},
    {"model"},
    {"evaluation"},
    {"rl", "baselines"},
]
LIBRARY = set().union(*LAYERS)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "sapo_pipeline" and len(parts) > 1 else None


def _library_files() -> list[tuple[str, Path]]:
    files = []
    for name in sorted(LIBRARY):
        target = SRC / name
        paths = sorted(target.rglob("*.py")) if target.is_dir() else [SRC / f"{name}.py"]
        files += [(name, p) for p in paths]
    return files


@pytest.mark.parametrize(("package", "path"), _library_files(),
                         ids=lambda v: str(v.relative_to(SRC)) if isinstance(v, Path) else v)
def test_imports_go_down_the_layers_and_never_to_kedro(package: str, path: Path):
    for line, module in _imports(path):
        where = f"{path.relative_to(SRC)}:{line} imports {module}"
        assert module.split(".")[0] != "kedro", where
        target = _package(module)
        if target is None or target == package:
            continue
        assert target in LIBRARY, f"{where}: a library package imports {target}"
        assert RANK[target] <= RANK[package], f"{where}: {target} is a higher layer"


def test_every_library_package_has_a_layer():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__"}
    # the Kedro side: pipelines, datasets, hooks, settings, the registry and the CLI; the entry
    # point of launched stages (it stages catalog datasets) and the kedro-viz screenshots
    kedro_side = {"pipelines", "datasets", "hooks", "settings", "pipeline_registry", "cli",
                  "parameters", "stages", "viz_shots"}
    assert (packages | modules) - kedro_side == LIBRARY
