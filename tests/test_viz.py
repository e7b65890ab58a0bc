"""kedro-viz: the static site builds, shows every pipeline and layer, and renders in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kedro_helpers import REPO, kedro, make_project

LAYERS = ["raw", "intermediate", "primary", "feature", "model_input", "models", "model_output", "reporting"]


@pytest.fixture(scope="module")
def viz_build(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("viz"))
    kedro(project, "viz", "build", "--include-hooks")
    build = project / "build"
    assert (build / "index.html").is_file()
    return build


def test_every_pipeline_and_layer_appears(viz_build: Path):
    from sapo_pipeline.pipelines.sapo_full.pipeline import STAGES

    main = json.loads((viz_build / "api" / "main").read_text())
    pipelines = {p["id"] for p in main["pipelines"]}
    stages = {m.__name__.rsplit(".", 1)[1] for m in STAGES}
    assert stages | {"sapo_full", "__default__"} <= pipelines
    assert main["layers"] == [layer for layer in LAYERS if layer in main["layers"]]
    data_nodes = [n for n in main["nodes"] if n["type"] == "data"]
    unlayered = [n["name"] for n in data_nodes if not n.get("layer") and not n["name"].startswith("params:")]
    assert not unlayered, f"datasets without a kedro-viz layer: {unlayered}"
    for name in pipelines - {"__default__"}:
        assert (viz_build / "api" / "pipelines" / name).is_file()
    # the RL methods are namespaced modular pipelines sharing the stage-2 model
    from sapo_pipeline.pipelines.rl import rl_namespaces

    DEFAULT_METHODS = rl_namespaces(REPO)

    modular = set(main["modular_pipelines"])
    assert set(DEFAULT_METHODS) <= modular, f"RL namespaces missing from kedro-viz: {sorted(modular)}"
    rl_nodes = {n["name"] for n in main["nodes"] if n["type"] == "task"}
    for method in DEFAULT_METHODS:
        assert f"{method}.train_rl_model" in rl_nodes or any(
            n.get("modular_pipelines") == [method] for n in main["nodes"] if n["type"] == "task"
        )


def test_readable_screenshots_in_headless_chromium(viz_build: Path, tmp_path: Path):
    """The two views of sapo_full and the RL namespaces, tour dismissed (make viz-shots)."""
    import matplotlib.image
    import numpy as np

    from sapo_pipeline.viz_shots import SHOTS, chromium, take

    if chromium() is None:
        pytest.skip("Chromium not installed (Debian package 'chromium'; .ci/run installs it where apt works)")
    shots = take(viz_build, tmp_path / "shots", size=(1600, 1000))
    assert [p.name for p in shots] == [f"{s.name}.png" for s in SHOTS]
    assert not (viz_build / "sapo-shot.html").exists()  # the loader page is removed again
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(shot)[..., :3]
        assert pixels.shape[:2] == (1000, 1600)  # the window asked for
        colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        # a rendered flow (nodes, edges, text, the sidebar), not a blank or single-colour page
        assert len(colours) > 100 and pixels.std() > 0.02, shot.name
        # the light theme: the tour's dark overlay would make the page mostly dark
        assert pixels.mean() > 0.6, shot.name
