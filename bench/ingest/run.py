"""Benchmark: polars ingestion (our library) vs a straightforward pandas implementation.

Both run the same steps on the same generated Amazon-2023 files (~1M reviews by default), each
in its own fresh process (so peak memory is that implementation's alone), alternating, several
times. Written to bench/results/ingest.json: median wall time and peak RSS of both, their
ratios, and whether both produced the same counts.

    python bench/ingest/run.py                 # ~1M reviews, 3 repeats
    python bench/ingest/run.py --scale 2 --repeats 1   # quick check
Goal (issue): >= 5x faster at <= 1/3 of pandas' peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(HERE)]

GOAL_SPEEDUP = 5.0
GOAL_MEMORY_RATIO = 1 / 3


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(impl: str, data: Path, category: str) -> dict:
    """Run one implementation once; return its figures (called in a fresh process)."""
    reviews, meta = data / f"{category}.jsonl", data / f"meta_{category}.jsonl"
    if impl == "polars":
        import polars as pl

        from sapo_pipeline.config_utils import from_dict
        from sapo_pipeline.data.config import IngestConfig
        from sapo_pipeline.data.ingest import build_samples, clean_source
        from sapo_pipeline.data.processing import split_counts
        from sapo_pipeline.data.readers import read_source

        base_rss = _peak_rss_mb()
        start = time.perf_counter()
        cfg = from_dict(IngestConfig, {"source": {"format": "amazon2023", "path": str(data)}})
        raw = read_source("amazon2023", reviews_path=reviews, meta_path=meta)
        clean = clean_source(raw, cfg)
        samples = build_samples(clean.interactions, clean.items, None, cfg.split)
        result = {
            "items": clean.items.height,
            "interactions": clean.interactions.height,
            "samples": split_counts(samples),
            "history_items": int(samples.select(pl.col("history").list.len().sum()).item()),
        }
    else:
        import pandas_baseline

        base_rss = _peak_rss_mb()
        start = time.perf_counter()
        result = pandas_baseline.run(reviews, meta)
    wall = time.perf_counter() - start
    return {"impl": impl, "wall_s": wall, "peak_rss_mb": _peak_rss_mb(), "import_rss_mb": base_rss,
            "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=21.0, help="generator scale (21 ~ 1M reviews)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingest.json")
    parser.add_argument("--worker", choices=["polars", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--category", default="Synthetic_Products", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.category)))
        return

    from sapo_pipeline.data.generator import GeneratorConfig, generate_if_needed

    cfg = GeneratorConfig(seed=0, scale=args.scale, defect_rate=0.0)
    data = REPO / "bench" / "results" / f"data_scale{args.scale:g}"
    manifest = generate_if_needed(data, cfg)
    n_reviews = manifest["rows"]["reviews"]

    runs: dict[str, list[dict]] = {"polars": [], "pandas": []}
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", str(os.cpu_count()))}
    for rep in range(args.repeats):
        for impl in ("polars", "pandas"):
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", impl, "--data", str(data), "--category", cfg.category],
                capture_output=True, text=True, env=env, check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{impl} worker failed:\n{proc.stderr[-4000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[impl].append(run)
            print(f"repeat {rep + 1}/{args.repeats} {impl}: {run['wall_s']:.2f}s, peak {run['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)

    def median(impl: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[impl])

    speedup = median("pandas", "wall_s") / median("polars", "wall_s")
    memory_ratio = median("polars", "peak_rss_mb") / median("pandas", "peak_rss_mb")
    same = runs["polars"][0]["result"] == runs["pandas"][0]["result"]
    report = {
        "benchmark": "ingest",
        "reviews": n_reviews,
        "generator": {"scale": args.scale, "seed": 0},
        "repeats": args.repeats,
        "polars": {"median_wall_s": median("polars", "wall_s"), "median_peak_rss_mb": median("polars", "peak_rss_mb"),
                   "runs": runs["polars"]},
        "pandas": {"median_wall_s": median("pandas", "wall_s"), "median_peak_rss_mb": median("pandas", "peak_rss_mb"),
                   "runs": runs["pandas"]},
        "speedup_vs_pandas": speedup,
        "peak_memory_ratio_vs_pandas": memory_ratio,
        "same_result": same,
        "goal": {"speedup_min": GOAL_SPEEDUP, "memory_ratio_max": GOAL_MEMORY_RATIO,
                 "met": speedup >= GOAL_SPEEDUP and memory_ratio <= GOAL_MEMORY_RATIO and same},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "note": "wall time excludes interpreter start-up and imports; peak RSS includes them",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("reviews", "speedup_vs_pandas", "peak_memory_ratio_vs_pandas",
                                             "same_result", "goal")}, indent=2))


if __name__ == "__main__":
    main()
