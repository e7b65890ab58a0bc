"""Entry point of the training stages run on several processes: ``python -m sapo_pipeline.stages
--config <launch dir>/run.json`` (under ``accelerate launch`` or ``torchrun``; see
:mod:`sapo_pipeline.training.launch`).

A Kedro node whose stage has ``launcher.num_processes > 1`` writes its (already loaded) inputs
and its parameter section into a launch directory with :func:`write_run`, launches this module,
and reads back what rank 0 wrote with :func:`read_output`. A cluster scheduler (Slurm,
Kubernetes) can run the same command on inputs laid out the same way. ``run.json``::

    {"stage": "align" | "reason" | "rl",
     "section": {...the stage's parameters (align: / reason: / {rl:, teacher_corpus:})...},
     "inputs": {"<name>": {"kind": "parquet" | "tokenizer" | "checkpoint" | "tensors",
                           "path": "..."}},
     "output": "<dir>", "num_processes": N (the world size the workers must find, or null)}

Every rank runs the same library call as the node does in process (:data:`STAGES`); rank 0
writes the checkpoint (atomically) to ``<output>/model`` and the log to ``<output>/log.csv``. A rank
that fails writes its traceback to ``<launch dir>/errors/rank<r>.txt`` before exiting, so the node
can report that rank's own error. Resume works as in process: the stage's ``train.work_dir``
holds the checkpoints, and the same run again continues from the latest.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


def _train_align(inputs: Mapping[str, Any], section: Mapping[str, Any]) -> tuple[Any, str]:
    from sapo_pipeline.model.sft_stages import train_align
    from sapo_pipeline.model.sft_state import log_to_csv
    from sapo_pipeline.parameters import load_section

    checkpoint, rows = train_align(inputs["alignment_corpus"], inputs["align_tokenizer"],
                                   inputs["sid_table"], load_section("align", section),
                                   sid_quantizer=inputs.get("sid_quantizer"))
    return checkpoint, log_to_csv(rows)


def _train_reason(inputs: Mapping[str, Any], section: Mapping[str, Any]) -> tuple[Any, str]:
    from sapo_pipeline.model.sft_stages import train_reason
    from sapo_pipeline.model.sft_state import log_to_csv
    from sapo_pipeline.parameters import load_section

    checkpoint, rows = train_reason(inputs["align_model"], inputs["reasoning_corpus"],
                                    load_section("reason", section),
                                    alignment=inputs["alignment_corpus"])
    return checkpoint, log_to_csv(rows)


def _train_rl(inputs: Mapping[str, Any], section: Mapping[str, Any]) -> tuple[Any, str]:
    from sapo_pipeline.config_utils import from_dict
    from sapo_pipeline.rl.diagnostics import log_to_csv
    from sapo_pipeline.rl.methods import rl_config_from_dict
    from sapo_pipeline.rl.stage import run_rl_stage
    from sapo_pipeline.teacher.config import TeacherCorpusConfig

    cfg = rl_config_from_dict(section["rl"], "rl")
    prompts = from_dict(TeacherCorpusConfig, section["teacher_corpus"], "teacher_corpus").prompts
    checkpoint, rows = run_rl_stage(inputs["reason_model"], inputs["samples"], inputs["items"],
                                    inputs["sid_table"], prompts, cfg)
    return checkpoint, log_to_csv(rows)


#: stage -> (its training call on the loaded inputs: checkpoint and log CSV, the inputs it needs)
STAGES: dict[str, tuple[Callable[..., tuple[Any, str]], tuple[str, ...]]] = {
    "align": (_train_align, ("alignment_corpus", "align_tokenizer", "sid_table")),
    "reason": (_train_reason, ("align_model", "reasoning_corpus", "alignment_corpus")),
    "rl": (_train_rl, ("reason_model", "samples", "items", "sid_table")),
}


def _kind(value: Any) -> str:
    if isinstance(value, pl.DataFrame):
        return "parquet"
    if isinstance(value, dict) and all(hasattr(v, "shape") for v in value.values()):
        return "tensors"
    if all(hasattr(value, a) for a in ("model", "tokenizer", "extra")):
        return "checkpoint"
    if hasattr(value, "save_pretrained"):
        return "tokenizer"
    raise TypeError(f"cannot hand a {type(value).__name__} to a launched stage")


def write_run(launch_dir: str | Path, stage: str, section: Mapping[str, Any],
              inputs: Mapping[str, Any], num_processes: int | None = None) -> Path:
    """Write ``inputs`` (DataFrames, a tokenizer, checkpoints) and ``run.json`` under
    ``launch_dir``; returns the ``run.json`` path. ``num_processes``: the world size the
    workers must find (a launcher that started another number is an error, not a silently
    different run)."""
    from sapo_pipeline.datasets.checkpoint import HFCheckpointDataset, HFTokenizerDataset
    from sapo_pipeline.io_utils import write_text_atomically

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; launchable: {sorted(STAGES)}")
    missing = [n for n in STAGES[stage][1] if n not in inputs]
    if missing:
        raise ValueError(f"stage {stage}: inputs {missing} missing")
    root = Path(launch_dir).resolve()  # absolute: another machine or a scheduler reads it
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    spec = {}
    for name, value in inputs.items():
        kind = _kind(value)
        path = root / "inputs" / (f"{name}.parquet" if kind == "parquet" else name)
        if kind == "parquet":
            from sapo_pipeline.datasets.tables import ParquetDataset

            ParquetDataset(filepath=str(path)).save(value)
        elif kind == "tokenizer":
            HFTokenizerDataset(filepath=str(path)).save(value)
        elif kind == "tensors":
            from sapo_pipeline.datasets.tensors import SafetensorsDataset

            path = path.with_suffix(".safetensors")
            SafetensorsDataset(filepath=str(path)).save(value)
        else:
            HFCheckpointDataset(filepath=str(path)).save(value)
        spec[name] = {"kind": kind, "path": str(path)}
    run = {"stage": stage, "section": dict(section), "inputs": spec,
           "output": str(root / "output"), "num_processes": num_processes}
    target = root / RUN_FILE
    write_text_atomically(target, json.dumps(run, indent=2, default=str) + "\n")
    return target


def read_inputs(run: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs named in a ``run.json``, loaded."""
    from sapo_pipeline.datasets.checkpoint import HFCheckpointDataset, HFTokenizerDataset

    out = {}
    for name, item in run["inputs"].items():
        kind, path = item["kind"], item["path"]
        if kind == "parquet":
            out[name] = pl.read_parquet(path)
        elif kind == "tokenizer":
            out[name] = HFTokenizerDataset(filepath=path).load()
        elif kind == "checkpoint":
            out[name] = HFCheckpointDataset(filepath=path,
                                            load_args={"is_trainable": True}).load()
        elif kind == "tensors":
            from sapo_pipeline.datasets.tensors import SafetensorsDataset

            out[name] = SafetensorsDataset(filepath=path).load()
        else:
            raise ValueError(f"{RUN_FILE}: input {name!r} of unknown kind {kind!r}")
    return out


def read_output(launch_dir: str | Path) -> tuple[Any, str]:
    """The checkpoint and the log CSV rank 0 wrote."""
    from sapo_pipeline.datasets.checkpoint import HFCheckpointDataset

    out = Path(launch_dir) / "output"
    checkpoint = HFCheckpointDataset(filepath=str(out / "model")).load()
    return checkpoint, (out / "log.csv").read_text(encoding="utf-8")


def run(run_config: str | Path) -> None:
    """This process's share of the stage in ``run_config``; rank 0 writes the outputs."""
    from sapo_pipeline.datasets.checkpoint import HFCheckpointDataset
    from sapo_pipeline.io_utils import write_text_atomically

    spec = json.loads(Path(run_config).read_text(encoding="utf-8"))
    stage = spec["stage"]
    if stage not in STAGES:
        raise ValueError(f"{run_config}: unknown stage {stage!r}; launchable: {sorted(STAGES)}")
    want, world = spec.get("num_processes"), int(os.environ.get("WORLD_SIZE", "1"))
    if want is not None and world != int(want):
        raise RuntimeError(f"{run_config}: started as {world} process(es), the launch asked for "
                           f"{want}; check the launcher's arguments (an accelerate config "
                           "without a distributed type starts one process)")
    train, _ = STAGES[stage]
    checkpoint, log_csv = train(read_inputs(spec), spec["section"])
    if int(os.environ.get("RANK", "0")) == 0:
        out = Path(spec["output"])
        HFCheckpointDataset(filepath=str(out / "model")).save(checkpoint)
        write_text_atomically(out / "log.csv", log_csv)


def launch_stage(stage: str, section: Mapping[str, Any], launcher: Any, work_dir: str | Path,
                 **inputs: Any) -> tuple[Any, str]:
    """What a node does with ``launcher.num_processes > 1``: stage ``inputs`` and ``section``
    in ``<work_dir>_launch/``, run the stage under the launcher (a failing rank's error raises
    :class:`~sapo_pipeline.training.launch.LaunchError`), and return rank 0's checkpoint and log
    CSV. The staged copies are removed once read back; ``run.json`` stays, for the record."""
    import shutil

    from sapo_pipeline.training.launch import launch

    launch_dir = Path(f"{Path(work_dir)}_launch").resolve()
    shutil.rmtree(launch_dir / "output", ignore_errors=True)  # never read back a stale model
    run_config = write_run(launch_dir, stage, section, inputs, launcher.num_processes)
    launch(launcher, run_config, logger=log)
    checkpoint, log_csv = read_output(launch_dir)
    for staged in ("inputs", "output"):
        shutil.rmtree(launch_dir / staged, ignore_errors=True)
    return checkpoint, log_csv


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sapo_pipeline.stages --config run.json``."""
    parser = argparse.ArgumentParser(prog="python -m sapo_pipeline.stages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the run.json of a launch directory")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"rank {rank}: %(levelname)s %(name)s: %(message)s")
    try:
        run(args.config)
    except BaseException:
        errors = Path(args.config).parent / "errors"
        errors.mkdir(parents=True, exist_ok=True)
        (errors / f"rank{rank}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

