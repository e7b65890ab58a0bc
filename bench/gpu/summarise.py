"""Gather what bench/gpu/run.sh measured into one ``gpu_check.json`` (and print it).

Reads the steps' exit codes and wall times (``steps.jsonl``), the environment (``env.json``), the
smoke run's node timings and test metrics from its run root, which device and precision each
trained checkpoint says it was trained on, and the headline ratios of the SFT and decoding benches."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def smoke_summary(root: Path) -> dict[str, Any]:
    reporting = root / "08_reporting"
    timings = sorted((reporting / "run_timings").glob("*.json"))
    out: dict[str, Any] = {"run_root": str(root)}
    if timings:
        last = _load(timings[-1])
        out["node_seconds_by_tag"] = last["by_tag"]
        out["nodes_total_seconds"] = last["total_seconds"]
    models = root / "06_models"
    out["stages_ran_on"] = {  # what each trained checkpoint says it was trained on
        d.name: {k: (_load(d / "extra.json").get("training") or {}).get(k)
                 for k in ("device", "bf16", "processes", "steps")}
        for d in sorted(models.glob("*")) if (d / "extra.json").is_file()}
    test = _load(reporting / "evaluation_test.json")
    if test:
        out["test_rows"] = test.get("n_rows")
        k = max(test["ks"])  # the smoke env ranks fewer than 10
        out[f"test_ndcg@{k}"] = {m["method"]: round(m["metrics"][f"ndcg@{k}"]["mean"], 4)
                                 for m in test["methods"]}
    return out


def bench_summary(out: Path) -> dict[str, Any]:
    res: dict[str, Any] = {}
    sft = _load(out / "sft.json")
    if sft:
        res["sft"] = {k: sft.get(k) for k in ("ratio_vs_trainer", "ratio_vs_trainer_group_by_length",
                                              "median_tokens_per_s", "meets_goal")}
    dec = _load(out / "decoding.json")
    if dec:
        res["decoding"] = {"beam_ratio": dec["beam"]["ratio"], "sample_ratio": dec["sample"]["ratio"],
                           "goals_met": dec.get("goals_met")}
        if "stepwise_beam" in dec:
            sw = dec["stepwise_beam"]
            res["decoding"]["stepwise"] = {
                k: sw.get(k) for k in ("ours_ms_per_prompt", "speedup_vs_today",
                                       "speedup_vs_generate", "top_b_sets_agree_generate")}
            res["decoding"]["stepwise"]["ours_over_floor"] = sw["floor"]["ours_over_floor"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="run.sh's output folder")
    ap.add_argument("--run-root", type=Path, required=True, help="the smoke run's run root")
    args = ap.parse_args()
    steps_file = args.out / "steps.jsonl"
    steps = ([json.loads(line) for line in steps_file.read_text().splitlines() if line.strip()]
             if steps_file.is_file() else [])
    summary = {"env": _load(args.out / "env.json"), "steps": steps,
               "all_passed": bool(steps) and all(s["rc"] == 0 for s in steps),
               "smoke": smoke_summary(args.run_root), **bench_summary(args.out)}
    text = json.dumps(summary, indent=2) + "\n"
    (args.out / "gpu_check.json").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    sys.exit(0 if summary["all_passed"] else 1)


if __name__ == "__main__":
    main()
