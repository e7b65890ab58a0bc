"""Every output of every registered pipeline is a persisted catalog dataset with a layer."""

from __future__ import annotations

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

from kedro_helpers import REPO


@pytest.fixture(scope="module")
def catalog_and_pipelines():
    bootstrap_project(REPO)
    configure_project("sapo_pipeline")
    with KedroSession.create(project_path=REPO, env="base") as session:
        context = session.load_context()
        return context.catalog, dict(pipelines)


def test_every_node_output_is_persisted_with_a_layer(catalog_and_pipelines):
    catalog, registered = catalog_and_pipelines
    outputs = set().union(*(p.all_outputs() for p in registered.values()))
    missing, memory, unlayered = [], [], []
    for name in sorted(outputs):
        if name not in catalog:
            missing.append(name)
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, MemoryDataset):
            memory.append(name)
        layer = ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")
        if not layer:
            unlayered.append(name)
    assert not missing, f"outputs without a catalog entry: {missing}"
    assert not memory, f"outputs kept only in memory: {memory}"
    assert not unlayered, f"outputs without a kedro-viz layer: {unlayered}"


def test_every_node_is_named(catalog_and_pipelines):
    _, registered = catalog_and_pipelines
    for name, pipe in registered.items():
        for node in pipe.nodes:
            assert node._name, f"pipeline {name}: unnamed node {node}"
