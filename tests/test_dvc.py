"""``dvc repro`` rebuilds every stage from a fresh copy, and a second run does nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sapo_pipeline.rl.diagnostics import csv_to_log

from kedro_helpers import REPO, make_project

BIN = Path(sys.executable).parent


def dvc(project: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KEDRO_ENV": "smoke",
        "DVC_NO_ANALYTICS": "1",
        "KEDRO_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    proc = subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def test_dvc_stages_match_the_kedro_pipelines():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    from sapo_pipeline.pipelines.ablations import COMPARED
    from sapo_pipeline.pipelines.evaluate.pipeline import BASELINE_MODELS, STAGE_MODELS
    from sapo_pipeline.pipelines.rl import rl_namespaces
    from sapo_pipeline.pipelines.sapo_full.pipeline import STAGES

    expected = [module.__name__.rsplit(".", 1)[1] for module in STAGES]
    assert list(stages) == [*expected, "ablation", "ablations"]
    # the RL stage runs every namespace of parameters_rl.yml, as the rl pipeline does; the
    # ablation stage every namespace marked ablation: true, as the ablations pipeline does
    assert stages["rl"]["foreach"] == list(rl_namespaces(REPO))
    ablations = list(rl_namespaces(REPO, ablations=True))
    assert stages["ablation"]["foreach"] == ablations and ablations
    for name, stage in stages.items():
        pipeline = "ablations" if name == "ablation" else name
        if "foreach" in stage:  # one DVC stage per namespace of a modular pipeline
            stage = stage["do"]
            assert stage["cmd"] == (f"kedro run --pipelines={pipeline} --namespaces=${{item}} "
                                    "--params=run_root=data")
        elif name == "ablations":  # the report nodes only
            assert stage["cmd"] == "kedro run --pipelines=ablations --tags=ablations --params=run_root=data"
        else:
            assert stage["cmd"] == f"kedro run --pipelines={name} --params=run_root=data"
        params_file = next(iter(stage["params"][0]))
        own = {"ablation": "rl", "ablations": "evaluate"}.get(name, name)
        assert params_file == f"conf/base/parameters_{own}.yml"
    # every evaluated model's folders are the evaluate stage's outputs, one each, so that the
    # ablation stages can own theirs; the ablations report reads those of what it compares
    models = [*STAGE_MODELS, *rl_namespaces(REPO), *BASELINE_MODELS]
    assert sorted(o for o in stages["evaluate"]["outs"] if "/evaluate/" in o) == sorted(
        f"data/{layer}/evaluate/{m}" for m in models for layer in ("07_model_output", "08_reporting"))
    assert sorted(d for d in stages["ablations"]["deps"] if "/evaluate/" in d) == sorted(
        f"data/{layer}/evaluate/{m}" for m in [*COMPARED, *ablations]
        for layer in ("07_model_output", "08_reporting"))


@pytest.fixture(scope="module")
def dvc_runs(tmp_path_factory) -> dict:
    """One smoke project: ``dvc repro`` twice, then ``dvc exp run -S`` of one SAPO ablation."""
    project = make_project(tmp_path_factory.mktemp("dvc") / "p")
    shutil.rmtree(project / "src")
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(project, "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", project / ".dvc" / "config")  # the shipped remote
    runs = {"project": project, "first": dvc(project, "repro"), "second": dvc(project, "repro"),
            "metrics": dvc(project, "metrics", "show", "--json")}
    # experiments need a commit to branch from (dvc.lock + code + conf; data is DVC's)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "baseline"], cwd=project, check=True)
    runs["push"] = dvc(project, "push")  # to the default remote, a folder beside the project
    runs["exp"] = dvc(project, "exp", "run", "-S",
                      "conf/base/parameters_rl.yml:sapo.rl.step_advantage=false")
    runs["exp_show"] = dvc(project, "exp", "show", "--json")
    return runs


@pytest.mark.slow
def test_dvc_repro_twice_from_scratch(dvc_runs: dict):
    first, project = dvc_runs["first"], dvc_runs["project"]
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        for each in stage.get("foreach", [None]):
            assert f"Running stage '{name if each is None else f'{name}@{each}'}'" in first
    assert (project / "dvc.lock").is_file()
    second = dvc_runs["second"]
    assert "Data and pipelines are up to date" in second and "Running stage" not in second
    metrics = dvc_runs["metrics"]
    assert "ingest_report.json" in metrics and "sid_report.json" in metrics
    assert "evaluation_test.json" in metrics and '"sapo"' in metrics
    assert "rl_cost.json" in metrics and "paired_step_ratio" in metrics


@pytest.mark.slow
def test_a_fresh_clone_pulls_a_finished_run_and_reruns_nothing(dvc_runs: dict, tmp_path: Path):
    project = dvc_runs["project"]
    assert (project.parent / "sapo-dvc-store").is_dir()  # the default remote, outside the repo
    clone = project.parent / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    assert not (clone / "data" / "06_models" / "rl_sapo").exists()
    dvc(clone, "pull")
    for path in ("06_models/rl_sapo/model.safetensors", "08_reporting/evaluation_test.json",
                 "08_reporting/align_eval.json", "07_model_output/evaluate"):
        assert (clone / "data" / path).exists(), path
    assert "Data and pipelines are up to date" in dvc(clone, "status")
    again = dvc(clone, "repro")
    assert "Running stage" not in again, again[-2000:]


@pytest.mark.slow
def test_dvc_exp_run_set_param_switches_one_rl_method(dvc_runs: dict):
    """``-S sapo.rl.step_advantage=false`` reruns rl@sapo and evaluate only, and takes effect."""
    out, project = dvc_runs["exp"], dvc_runs["project"]
    assert "Running stage 'rl@sapo'" in out and "Running stage 'evaluate'" in out
    for untouched in ("ingest", "align", "reason", "rl@grpo", "rl@rere"):
        assert f"Running stage '{untouched}'" not in out
    params = yaml.safe_load((project / "conf/base/parameters_rl.yml").read_text())
    assert params["sapo"]["rl"]["step_advantage"] is False
    assert params["sapo"]["rl"]["steps"] == params["grpo"]["rl"]["steps"]  # YAML merge kept
    extra = json.loads((project / "data/06_models/rl_sapo/extra.json").read_text())
    assert extra["rl_config"]["step_advantage"] is False
    # without step advantages every step carries the same (outcome) advantage
    log = csv_to_log((project / "data/08_reporting/rl_sapo_log.csv").read_text())
    for row in log:
        assert row["adv_std_step1"] == pytest.approx(row["adv_std_step3"])
    assert "step_advantage" in dvc_runs["exp_show"]


#: DVC outputs that are no catalog dataset: the generator's raw files (written beside the
#: manifest, which is the catalog's output).
DVC_ONLY_OUTS = {"data/01_raw/synthetic"}


def _declared(stage: dict, item: str | None) -> set[str]:
    paths = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            paths.add(path.replace("${item}", item) if item else path)
    return paths


def test_every_catalog_output_of_a_stage_is_one_of_its_dvc_outs_and_nothing_else():
    """The Kedro catalog and dvc.yaml name the same files: each dataset a stage's pipeline
    writes lies in one of the stage's outs / metrics / plots, and each of those holds one."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(REPO)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    with KedroSession.create(project_path=REPO) as session:
        catalog = session.load_context().catalog
        for name, stage in stages.items():
            items = stage.get("foreach", [None])
            for item in items:
                pipe = pipelines[{"ablation": "ablations"}.get(name, name)]
                if name == "ablations":  # the report nodes; the ablation@ stages train and score
                    pipe = pipe.only_nodes_with_tags("ablations")
                if item is not None:
                    pipe = pipe.only_nodes_with_namespaces([item])
                written = set()
                for dataset in pipe.all_outputs():
                    description = catalog.get(dataset)._describe()
                    filepath = description.get("filepath") if isinstance(description, dict) else None
                    if filepath:  # MemoryDatasets live in the run only
                        written.add(Path(filepath).resolve().relative_to(REPO).as_posix())
                declared = _declared(stage.get("do", stage), item)
                where = f"{name}@{item}" if item else name
                strays = [w for w in written
                          if not any(w == d or w.startswith(f"{d}/") for d in declared)]
                assert not strays, f"{where}: catalog outputs not in dvc.yaml: {sorted(strays)}"
                empty = [d for d in declared - DVC_ONLY_OUTS
                         if not any(w == d or w.startswith(f"{d}/") for w in written)]
                assert not empty, f"{where}: dvc.yaml outs no dataset writes: {sorted(empty)}"


@pytest.mark.slow
def test_a_kedro_run_recorded_with_dvc_commit_is_what_dvc_repro_would_build(tmp_path: Path):
    """`make run`-style: `kedro run` first (sapo_full, then the ablations, which DVC's graph
    holds too), then `dvc commit` records their outputs in dvc.lock; `dvc status` is then clean
    and `dvc repro` reruns nothing (README, Running)."""
    from kedro_helpers import kedro

    project = make_project(tmp_path / "p")
    shutil.rmtree(project / "src")
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    shutil.copy(REPO / ".gitignore", project / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    dvc(project, "init", "-q")
    # DVC's stages write under data/ whatever the env (dvc.yaml pins run_root); so must the run
    kedro(project, "run", "--pipelines=sapo_full", "--env", "smoke", "--params", "run_root=data")
    kedro(project, "run", "--pipelines=ablations", "--env", "smoke", "--params", "run_root=data")
    before = dvc(project, "status")
    assert "changed outs" in before or "deleted" in before or "modified" in before  # no dvc.lock
    dvc(project, "commit", "-f")
    assert "Data and pipelines are up to date" in dvc(project, "status")
    again = dvc(project, "repro")
    assert "Running stage" not in again and "Data and pipelines are up to date" in again


def test_the_study_file_runs_every_data_set_and_seed_into_its_own_root():
    """studies/dvc.yaml: one whole-graph run per (data set, seed) of studies/runs.yaml into its
    own run root, one report per data set over exactly its seeds, one results page over all."""
    from dvc.repo import Repo

    runs = yaml.safe_load((REPO / "studies" / "runs.yaml").read_text())
    stages = {s.addressing.split(":", 1)[1]: s for s in Repo(str(REPO)).index.stages
              if s.path.endswith(os.path.join("studies", "dvc.yaml"))}
    seeds: dict[str, list[str]] = {}
    for key, run in runs["runs"].items():
        stage = stages[f"run@{key}"]
        root = f"data/study/{run['dataset']}/seed{run['seed']}"
        assert Path(stage.wdir) == REPO
        assert stage.cmd.startswith("kedro run --pipelines=sapo_full")
        assert f"run_root={root},seed={run['seed']}" in stage.cmd
        env = run["conf"].split("/", 1)[1]
        assert (f"--env {env}" in stage.cmd) == (env != "base"), stage.cmd
        assert (REPO / run["conf"]).is_dir()
        assert [str(o.def_path) for o in stage.outs] == [root]
        assert {str(d.def_path) for d in stage.deps} >= {"src/sapo_pipeline", "conf/base",
                                                          run["conf"]}
        archive = stages[f"archive@{key}"]
        kept = f"studies/results/{run['dataset']}/seed{run['seed']}"
        assert archive.cmd == f"python -m sapo_pipeline.evaluation.archive {root} --out {kept}"
        assert [str(d.def_path) for d in archive.deps] == [root]
        assert [(str(o.def_path), o.use_cache) for o in archive.outs] == [(kept, False)]
        seeds.setdefault(run["dataset"], []).append(kept)
    one_seed = set(runs.get("datasets_one_seed") or {})
    assert set(seeds) == set(runs["datasets"]) | one_seed and not one_seed & set(runs["datasets"])
    assert all(len(roots) >= 3 for d, roots in seeds.items() if d not in one_seed)  # three each
    page = stages["results_page"]
    for dataset, roots in seeds.items():
        if dataset in one_seed:
            roots = roots[:1]
        report = stages[f"report{'_one_seed' if dataset in one_seed else ''}@{dataset}"]
        deps = [str(d.def_path) for d in report.deps if "/results/" in str(d.def_path)]
        assert deps == roots and report.cmd.split(" --dataset")[0].split()[-len(roots):] == roots
        assert f"--dataset {dataset} --out studies/results/{dataset}/report" in report.cmd
        out = f"studies/results/{dataset}/report/study_test.json"
        assert out in {str(o.def_path) for o in report.outs}
        assert out in page.cmd and out in {str(d.def_path) for d in page.deps}
