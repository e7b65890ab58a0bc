"""Benchmark: our constrained decoding vs transformers' ``generate``, same model and prompts.

Set-up: a synthetic catalog (``--items`` SIDs, 3 levels x 256 codes), a byte-level BPE tokenizer
trained on generated prompts (histories of SIDs and titles), the scratch ``default`` backbone
(Qwen2, 256 wide, 4 layers) with random weights on ``--device`` (cpu by default), and ``--prompts`` prompts "The user bought:
<history of 3-10 SIDs>\\nNext item: " (left-padded in batches for both sides).

(a) plain SID beam search, B beams: ``decoding.beam_search`` vs ``generate(num_beams=B,
    num_return_sequences=B, prefix_allowed_tokens_fn=<trie>, max_new_tokens=K+1)``; reports
    ms/prompt, the ratio, and whether the top-B SID sets (and orders) agree per prompt.
(b) group sampling, G per prompt, plain layout: ``decoding.sample_groups`` (full-vocabulary
    log-probs recorded) vs ``generate(do_sample=True, num_return_sequences=G, top_k=0, ...)``
    (nothing recorded; also with ``output_logits=True`` + log-softmax, what an RL loop needs).
(c) group sampling in the step-aligned layout (thinking blocks capped at ``--think-cap``):
    ours vs ``generate`` with a memoised Python state machine as ``prefix_allowed_tokens_fn``.
(d) timings only: greedy decoding (what the SFT valid accuracy runs).
(e) step-wise beam search (reasoning models' evaluation): ours vs the decoder before the
    shared-prefix KV cache (one cache copy per beam, batches of 8 prompts) vs ``generate`` driven
    level by level with the layout as ``prefix_allowed_tokens_fn``; the top-B sets must agree;
    and the arithmetic floor, 2 x parameters x decoded tokens per prompt at the matmul
    throughput measured here at the decoder's shapes.

The HF prefix functions memoise their answer per generated prefix (a fair, cheap optimisation).
Each measurement: one warm-up, then ``--repeats`` timed runs alternating the two sides; medians.

    python bench/decoding/run.py                      # 50 prompts, 3 repeats
    python bench/decoding/run.py --prompts 8 --repeats 1 --skip-reasoning   # quick check
Writes bench/results/decoding.json. Goals: >= 5x for beam search, >= 3x for sampling; step-wise
beam search >= 3x the former decoder and within 2x of the floor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # bench/world.py: the synthetic catalog and prompts
for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(_k, _v)

import torch  # noqa: E402
import transformers  # noqa: E402
from common import compare, timed  # noqa: E402
from devices import add_device_arg, describe, resolve  # noqa: E402
from hf_side import hf_beam, hf_sample, plain_prefix_fn, reasoning_prefix_fn  # noqa: E402
from stepwise import add_stepwise_args, bench_stepwise  # noqa: E402
from world import CODEBOOK, LEVELS, make_world  # noqa: E402

from sapo_pipeline.decoding import (  # noqa: E402
    beam_search,
    greedy_decode,
    sample_groups,
)
from sapo_pipeline.model.backbone import BackboneConfig, build_model  # noqa: E402

GOALS = {"beam": 5.0, "sample": 3.0, "stepwise": 3.0, "stepwise_floor": 2.0}
log = logging.getLogger("bench.decoding")


def bench_beam(model, w, args) -> dict[str, Any]:
    p, b, vocab, trie = w["prompts"], args.beams, w["vocab"], w["trie"]
    res, ours, theirs = compare(
        "beam", lambda: beam_search(model, p, trie, vocab, num_beams=b, batch_size=args.batch),
        lambda: hf_beam(model, p, vocab, trie, b, LEVELS + 1, args.batch), args.repeats, len(p))
    _, theirs_k = timed(lambda: hf_beam(model, p, vocab, trie, b, LEVELS, args.batch))
    sets = order = order_k = 0
    diffs = []
    for i, hits in enumerate(ours):
        mine = [h.codes for h in hits]
        sets += set(mine) == set(theirs[i])
        order += mine == theirs[i]
        order_k += mine == theirs_k[i]
        if set(mine) != set(theirs[i]):
            diffs.append({"prompt": i, "ours": mine, "hf": theirs[i]})
    res.update({"beams": b, "top_b_sets_agree": f"{sets}/{len(p)}",
                "top_b_order_agrees": f"{order}/{len(p)}",
                "top_b_order_agrees_hf_max_new_tokens_K": f"{order_k}/{len(p)}",
                "set_differences": diffs[:5],
                "note": "HF's max_new_tokens=K+1 beam score adds the forced eos log-prob, which "
                        "can reorder (never change) the final B beams; with max_new_tokens=K "
                        "HF scores SID tokens only, as we do."})
    return res


def bench_sample(model, w, args, reasoning: bool) -> dict[str, Any]:
    p, g, vocab, trie = w["prompts"], args.group, w["vocab"], w["trie"]
    targets = [trie.sids()[0]] * len(p)
    cap = args.think_cap
    new = LEVELS * (cap + 3) + 1 if reasoning else LEVELS + 1
    fn_factory = ((lambda width: reasoning_prefix_fn(vocab, trie, width, cap)) if reasoning
                  else (lambda width: plain_prefix_fn(vocab, trie, width)))
    gen = torch.Generator().manual_seed(0)

    def ours():
        return sample_groups(model, p, targets, trie, vocab, group_size=g, reasoning=reasoning,
                             max_think_tokens=cap, batch_size=args.sample_batch, generator=gen)

    res, ro, hf_out = compare(
        "sample_reasoning" if reasoning else "sample",
        ours, lambda: hf_sample(model, p, vocab, g, new, fn_factory, args.sample_batch), 
        args.repeats, len(p))
    res["group_size"] = g
    res["ours_mean_response_tokens"] = round(ro.stats["mean_response_tokens"], 2)
    res["theirs_mean_response_tokens"] = round(hf_out["mean_response_tokens"], 2)
    if not reasoning:
        dt, _ = timed(lambda: hf_sample(model, p, vocab, g, new, fn_factory, args.sample_batch,
                                        logprobs=True))
        res["theirs_with_logprobs_ms_per_prompt"] = round(1000 * dt / len(p), 2)
    return res


def bench_greedy(model, w, args) -> dict[str, Any]:
    """Timings only (no external baseline): greedy (the SFT valid accuracy) and step-wise beams."""
    p, vocab, trie = w["prompts"], w["vocab"], w["trie"]
    out: dict[str, Any] = {}
    for reasoning in (False, True):
        runs = [timed(lambda r=reasoning: greedy_decode(model, p, trie, vocab, reasoning=r,
                                                        max_think_tokens=args.think_cap,
                                                        batch_size=args.batch))[0]
                for _ in range(args.repeats)]
        out["greedy_reasoning_ms_per_prompt" if reasoning else "greedy_ms_per_prompt"] = round(
            1000 * statistics.median(runs) / len(p), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16, help="prompts per batch (beam, greedy)")
    add_stepwise_args(ap)
    ap.add_argument("--sample-batch", type=int, default=8, help="prompts per sampling batch")
    ap.add_argument("--think-cap", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--skip-reasoning", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "decoding.json"))
    add_device_arg(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("sapo_pipeline", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = resolve(args.device)
    w = make_world(args.items, args.prompts, seed=0)
    model = build_model(BackboneConfig(preset=args.preset), w["tokenizer"], seed=0).eval()
    model.to(device)
    lens = [len(x) for x in w["prompts"]]
    result: dict[str, Any] = {
        "setup": {"prompts": len(lens), "prompt_tokens_mean": round(statistics.mean(lens), 1),
                  "prompt_tokens_max": max(lens), "items": len(w["trie"]), "levels": LEVELS,
                  "codebook": CODEBOOK, "vocab": len(w["tokenizer"]), "preset": args.preset,
                  "weights": "random (seed 0)", "threads": args.threads,
                  "batch": args.batch, "sample_batch": args.sample_batch,
                  "think_cap": args.think_cap, "repeats": args.repeats,
                  "torch": torch.__version__, "transformers": transformers.__version__,
                  "python": platform.python_version(), "cpus": os.cpu_count(),
                  "load_avg_start": [round(x, 2) for x in os.getloadavg()],
                  **describe(device)},
        "goals": GOALS,
    }
    result["beam"] = bench_beam(model, w, args)
    result["sample"] = bench_sample(model, w, args, reasoning=False)
    if not args.skip_reasoning:
        result["sample_reasoning"] = bench_sample(model, w, args, reasoning=True)
        result.update(bench_greedy(model, w, args))
        result["stepwise_beam"] = bench_stepwise(model, w["prompts"], w["trie"], w["vocab"],
                                                 args)
    result["goals_met"] = {"beam": result["beam"]["ratio"] >= GOALS["beam"],
                           "sample": result["sample"]["ratio"] >= GOALS["sample"]}
    if "stepwise_beam" in result:
        sw = result["stepwise_beam"]
        result["goals_met"]["stepwise_vs_today"] = sw["speedup_vs_today"] >= GOALS["stepwise"]
        result["goals_met"]["stepwise_floor"] = sw["floor"]["ours_over_floor"] <= GOALS[
            "stepwise_floor"]
    result["setup"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
