"""Benchmark: seconds per RL step of SAPO against GRPO (and ReRe), same model, prompts, config.

The methods differ only in rewards, advantages and the loss aggregation, so SAPO's cost over
GRPO should be small. The pipeline's ``rl_cost`` report measures the real runs, but there the
methods run minutes apart on a shared machine; here they alternate in one process:

* set-up: the synthetic catalog / tokenizer / prompts of ``bench/world.py``, the scratch
  ``default`` backbone with random weights (a random policy's thinking blocks run to the cap,
  so every method samples responses of the same length), targets drawn from the catalog;
* the RL settings of ``conf/base/parameters_rl.yml`` (G, prompts per step, think cap, beta...)
  with ``--steps`` steps per run, no evaluation, no checkpoints;
* ``--repeats`` rounds; each round trains every method from the same initial weights and seed
  (the order rotates between rounds), and the first step of every run is left out (warm-up).

Reported per method: medians over steps of rollout / rewards+advantages / update / step seconds
and ms per response token, and the ratios against GRPO (goal: SAPO <= 1.05 per token).

    python bench/rl/run.py                       # 3 rounds x 5 steps x grpo, sapo, rere
    python bench/rl/run.py --repeats 1 --steps 2 --methods grpo sapo   # quick check
Writes bench/results/rl.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE.parent))  # bench/world.py
for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from world import make_world  # noqa: E402

from sapo_pipeline.model.backbone import BackboneConfig, build_model  # noqa: E402
from sapo_pipeline.rl.cost import summarise_costs  # noqa: E402
from sapo_pipeline.rl.methods import rl_config_from_dict  # noqa: E402
from sapo_pipeline.rl.prompts import PromptSet  # noqa: E402
from sapo_pipeline.rl.source import make_rollout_source  # noqa: E402
from sapo_pipeline.rl.trainer import train_rl  # noqa: E402

GOAL = 0.05
log = logging.getLogger("bench.rl")


def method_config(name: str, steps: int, work_dir: Path, threads: int) -> Any:
    """The method's settings from conf/base/parameters_rl.yml, sized for a timing run."""
    params = yaml.safe_load((REPO / "conf" / "base" / "parameters_rl.yml").read_text())
    rl = dict(params[name]["rl"])
    rl.update(steps=steps, eval_every=0, checkpoint_every=10_000, resume="never",
              progress_bar=False, work_dir=str(work_dir), num_threads=threads, log_every=1)
    return rl_config_from_dict(rl, f"{name}.rl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["grpo", "sapo", "rere"])
    ap.add_argument("--steps", type=int, default=5, help="RL steps per run (the first is warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each trains every method")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "rl.json"))
    args = ap.parse_args()
    if "grpo" not in args.methods:
        ap.error("--methods must include grpo (the reference)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("sapo_pipeline", "transformers", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)

    w = make_world(args.items, args.prompts, seed=0)
    rng = random.Random(1)
    targets = np.array([rng.choice(w["sids"]) for _ in w["prompts"]], dtype=np.int64)
    prompts = PromptSet(w["prompts"], targets, list(range(len(w["prompts"]))))
    initial = build_model(BackboneConfig(preset=args.preset), w["tokenizer"], seed=0)

    logs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = args.methods[r % len(args.methods):] + args.methods[:r % len(args.methods)]
            for name in order:
                cfg = method_config(name, args.steps, Path(tmp) / f"{name}_{r}", args.threads)
                source = make_rollout_source(cfg, w["trie"], w["vocab"])
                result = train_rl(copy.deepcopy(initial), prompts, source, cfg,
                                  reference=initial)
                # one log per method: steps renumbered across rounds, warm-up step dropped
                for row in result.log:
                    if row["step"] > 1:
                        logs[name].append({**row, "step": len(logs[name]) + 1, "round": r})
                log.info("round %d %s: median step %.2f s", r, name,
                         statistics.median(x["step_s"] for x in result.log[1:] or result.log))
    summary = summarise_costs(logs, reference="grpo", skip_steps=0, goal=GOAL)
    cfg0 = method_config("grpo", args.steps, Path("."), args.threads)
    result = {
        "setup": {"methods": args.methods, "steps_per_run": args.steps, "repeats": args.repeats,
                  "timed_steps_per_method": {m: len(v) for m, v in logs.items()},
                  "prompts_per_step": cfg0.prompts_per_step, "group_size": cfg0.group_size,
                  "max_think_tokens": cfg0.max_think_tokens, "beta": cfg0.beta,
                  "items": len(w["trie"]), "preset": args.preset, "weights": "random (seed 0)",
                  "threads": args.threads, "torch": torch.__version__,
                  "python": platform.python_version(), "cpus": os.cpu_count(),
                  "load_avg_start": [round(x, 2) for x in os.getloadavg()]},
        "goal": {"sapo_token_ratio_max": 1 + GOAL},
        "costs": summary["methods"],
    }
    sapo = summary["methods"].get("sapo")
    if sapo is not None:
        result["sapo_vs_grpo"] = {k: sapo[k] for k in ("step_ratio", "paired_step_ratio",
                                                       "token_ratio", "advantage_share")}
        result["goal_met"] = sapo["token_ratio"] is not None and sapo["token_ratio"] <= 1 + GOAL
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, c in summary["methods"].items():
        log.info("%s: step %.2f s (rollout %.2f, advantages %.2f ms, update %.2f), %.3f ms/token, "
                 "token ratio vs grpo %.3f", name, c["median_step_s"], c["median_rollout_s"],
                 1000 * c["median_advantage_s"], c["median_update_s"], c["median_ms_per_token"],
                 c["token_ratio"])
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
