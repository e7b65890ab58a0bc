"""Benchmark row (e): step-wise beam search, the reasoning models' evaluation decoder.

Ours (``decoding.beam_search(reasoning=True)``: prompts' keys / values shared by their beams,
the level-1 block folded into them, the decoding step written out over the model's weights,
greedy block tokens over views of the logits, 64 prompts per batch as evaluate decodes) vs the
decoder before the shared-prefix cache ("today": one cache copy per beam, evaluate's former batch
of 8 prompts; the same code with ``KVSession.share_prefix`` and ``StepMachine.greedy_views`` off)
vs ours stepping through the transformers module forward (``KVSession.written_step`` off) vs
``generate`` driven level by level (``hf_side.hf_stepwise_beam``). The top-B sets must agree.
The floor is set by arithmetic: 2 x parameters x decoded tokens per prompt (every beam's
response, the level-0 block shared by all beams counted once) at the fp32 matmul throughput
measured here at the decoder's shapes; it leaves out the reads of the KV cache.

Run inside ``bench/decoding/run.py`` on its synthetic world (random weights: thinking blocks
run to the cap), or alone on a trained checkpoint with the project's test prompts, exactly as
``evaluate`` renders them (concise traces: blocks end by themselves, at different lengths)::

    python bench/decoding/stepwise.py --checkpoint data/06_models/reason_model --prompts 128
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # bench/devices.py

import torch  # noqa: E402
from common import compare  # noqa: E402
from devices import add_device_arg, describe, resolve, synchronize  # noqa: E402
from hf_side import hf_stepwise_beam  # noqa: E402

from sapo_pipeline.decoding import KVSession, beam_search  # noqa: E402
from sapo_pipeline.decoding.state_machine import StepMachine  # noqa: E402

log = logging.getLogger("bench.decoding")


def add_stepwise_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stepwise-batch", type=int, default=64,
                    help="prompts per batch of our step-wise beam search (evaluate's default)")
    ap.add_argument("--today-batch", type=int, default=8,
                    help="prompts per batch of the former decoder (evaluate's former default)")


def matmul_gflops(rows: int, hidden: int, inner: int, repeats: int = 30,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Median matmul throughput at the decoder's shapes ([rows, hidden] x [hidden, inner]) on
    ``device``, in the model's dtype."""
    x = torch.randn(rows, hidden, device=device, dtype=dtype)
    w = torch.randn(inner, hidden, device=device, dtype=dtype)
    for _ in range(5):
        torch.nn.functional.linear(x, w)
    runs = []
    for _ in range(repeats):
        synchronize()
        t0 = time.perf_counter()
        torch.nn.functional.linear(x, w)
        synchronize()
        runs.append(time.perf_counter() - t0)
    return 2 * rows * hidden * inner / statistics.median(runs) / 1e9


def decoded_tokens(hits: list, vocab: Any) -> float:
    """Tokens step-wise beam search must decode per prompt: every beam's response, with the
    level-0 thinking block (shared by all beams of a prompt) counted once."""
    total = 0
    for beams in hits:
        first = beams[0].tokens
        shared = next(i for i, t in enumerate(first) if vocab.code_of(t) is not None)
        total += sum(len(h.tokens) for h in beams) - (len(beams) - 1) * shared
    return total / len(hits)


def bench_stepwise(model: Any, prompts: list, trie: Any, vocab: Any, args: Any) -> dict[str, Any]:
    b, cap = args.beams, args.think_cap

    def ours() -> list:
        return beam_search(model, prompts, trie, vocab, num_beams=b, reasoning=True,
                           max_think_tokens=cap, batch_size=args.stepwise_batch)

    def today() -> list:
        KVSession.share_prefix = StepMachine.greedy_views = False
        try:
            return beam_search(model, prompts, trie, vocab, num_beams=b, reasoning=True,
                               max_think_tokens=cap, batch_size=args.today_batch)
        finally:
            KVSession.share_prefix = StepMachine.greedy_views = True

    def module_forward() -> list:
        KVSession.written_step = False
        try:
            return ours()
        finally:
            KVSession.written_step = True

    n = len(prompts)
    res, mine, before = compare("stepwise_vs_today", ours, today, args.repeats, n)
    mod, _, via_modules = compare("stepwise_vs_module_forward", ours, module_forward,
                                  args.repeats, n)
    hf, _, theirs = compare("stepwise_vs_generate", ours, lambda: hf_stepwise_beam(
        model, prompts, vocab, trie, b, cap, args.batch), max(1, args.repeats - 2), n)
    sets_today = sum({h.codes for h in x} == {h.codes for h in y} for x, y in zip(mine, before))
    sets_mod = sum({h.codes for h in x} == {h.codes for h in y}
                   for x, y in zip(mine, via_modules))
    sets_hf = sum({h.codes for h in x} == set(y) for x, y in zip(mine, theirs))
    params = sum(t.numel() for t in model.parameters())
    cfg = model.config
    first = next(model.parameters())
    gflops = statistics.median(
        matmul_gflops(b * args.stepwise_batch, cfg.hidden_size, k, device=first.device,
                      dtype=first.dtype)
        for k in (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size))
    tokens = decoded_tokens(mine, vocab)
    floor_ms = 1000 * 2 * params * tokens / (gflops * 1e9)
    ms = res["ours_ms_per_prompt"]
    return {"prompts": n, "beams": b, "think_cap": cap, "ours_batch": args.stepwise_batch,
            "today_batch": args.today_batch,
            "ours_ms_per_prompt": ms, "today_ms_per_prompt": res["theirs_ms_per_prompt"],
            "speedup_vs_today": res["ratio"],
            "module_forward_ms_per_prompt": mod["theirs_ms_per_prompt"],
            "speedup_vs_module_forward": mod["ratio"],
            "generate_ms_per_prompt": hf["theirs_ms_per_prompt"],
            "speedup_vs_generate": round(hf["theirs_ms_per_prompt"] / hf["ours_ms_per_prompt"], 2),
            "top_b_sets_agree_today": f"{sets_today}/{n}",
            "top_b_sets_agree_module_forward": f"{sets_mod}/{n}",
            "top_b_sets_agree_generate": f"{sets_hf}/{n}",
            "floor": {"parameters": params, "decoded_tokens_per_prompt": round(tokens, 1),
                      "matmul_gflops": round(gflops, 1), "ms_per_prompt": round(floor_ms, 2),
                      "ours_over_floor": round(ms / floor_ms, 2)},
            "runs": {"vs_today": res, "vs_module_forward": mod, "vs_generate": hf}}


def project_world(checkpoint: str, data: Path, n: int, cap: int) -> dict[str, Any]:
    """A trained checkpoint and ``n`` seeded test rows of the project, prompts as evaluate
    renders them (``conf/base`` teacher templates)."""
    import polars as pl
    import yaml

    from sapo_pipeline.config_utils import from_dict
    from sapo_pipeline.datasets import HFCheckpointDataset
    from sapo_pipeline.decoding import SIDVocab
    from sapo_pipeline.evaluation.predict import render_prompts, response_budget
    from sapo_pipeline.evaluation.predictions import select_rows
    from sapo_pipeline.model.sft_data import encode_prompts
    from sapo_pipeline.sid.catalog import SIDTrie
    from sapo_pipeline.teacher.config import TeacherCorpusConfig

    ck = HFCheckpointDataset(filepath=checkpoint).load()
    samples = pl.read_parquet(data / "05_model_input" / "samples.parquet")
    sid_table = pl.read_parquet(data / "04_feature" / "sid_table.parquet")
    items = pl.read_parquet(data / "03_primary" / "items.parquet")
    params = yaml.safe_load((REPO / "conf/base/parameters_teacher_corpus.yml").read_text())
    prompt_cfg = from_dict(TeacherCorpusConfig, params["teacher_corpus"], "teacher_corpus").prompts
    rows = select_rows(samples, "test", n, 0)
    trie = SIDTrie.from_table(sid_table)
    texts = render_prompts(rows, sid_table, items, prompt_cfg, "reasoning")
    ids = encode_prompts(texts, ck.tokenizer, 768 - response_budget(trie.levels, True, cap), " ")
    return {"model": ck.model.eval(), "prompts": ids, "trie": trie,
            "vocab": SIDVocab.from_tokenizer(ck.tokenizer, table=trie)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a reasoning checkpoint directory")
    ap.add_argument("--data", default=str(REPO / "data"), help="the project's data folder")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--think-cap", type=int, default=48, help="evaluate's max_think_tokens")
    ap.add_argument("--batch", type=int, default=16, help="prompts per generate batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "decoding_stepwise.json"))
    add_stepwise_args(ap)
    add_device_arg(ap)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in ("sapo_pipeline", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = resolve(args.device)
    w = project_world(args.checkpoint, Path(args.data), args.prompts, args.think_cap)
    w["model"].to(device)
    lens = [len(p) for p in w["prompts"]]
    result = {"setup": {"checkpoint": args.checkpoint, "split": "test", "prompts": len(lens),
                        "prompt_tokens_mean": round(statistics.mean(lens), 1),
                        "items": len(w["trie"]), "threads": args.threads,
                        "repeats": args.repeats, "torch": torch.__version__,
                        **describe(device),
                        "load_avg_start": [round(x, 2) for x in os.getloadavg()]},
              "stepwise_beam": bench_stepwise(w["model"], w["prompts"], w["trie"], w["vocab"],
                                              args)}
    result["setup"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
