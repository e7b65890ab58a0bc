"""Benchmark: our SFT loop vs transformers' Trainer, same model, data and batch size.

Both train the same from-scratch backbone (same seed, same initial weights) for one epoch over
the same tokenized examples (response-only labels, prompts of varied length), batch size
``--batch-size``, AdamW + warm-up/cosine, grad clipping 1.0, no evaluation, on ``--device``
(cpu by default). Throughput =
real (non-pad) tokens of the epoch / wall time of the whole training call (our figure includes
building the loop, its resume fingerprint and the final checkpoint write; Trainer's its own
set-up). The runs alternate, ``--repeats`` times; medians are reported.

Variants (``--variants``) measure our own choices on the same data: batching pack / random
instead of bucket, bf16 autocast, the full output head instead of the selective one.

    python bench/sft/run.py --variants               # default preset, 1024 examples, 3 repeats
                                                     # (~15 min on 1 shared core)
    python bench/sft/run.py --examples 256 --repeats 1 --preset tiny     # quick check
Writes bench/results/sft.json. Goal: ours >= 1.5x Trainer's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE.parent))  # bench/devices.py
for _k, _v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "KEDRO_DISABLE_TELEMETRY": "1",
               "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1"}.items():
    os.environ.setdefault(_k, _v)

import torch
from devices import add_device_arg, describe, resolve, synchronize

from sapo_pipeline.model.backbone import BackboneConfig, build_model
from sapo_pipeline.model.sft import train_sft
from sapo_pipeline.model.sft_config import TrainConfig
from sapo_pipeline.model.sft_data import TokenizedCorpus, tokenize_sft
from sapo_pipeline.model.tokenizer import TokenizerConfig, train_tokenizer
from sapo_pipeline.sid.catalog import format_sid, sid_tokens

GOAL_RATIO = 1.5
LEVELS, CODEBOOK = 3, 256


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Alignment-like rows: history of 1..10 items (SID + title) -> next SID, or SID -> title."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(4000)]
    items = [(tuple(rng.randrange(CODEBOOK) for _ in range(LEVELS)),
              " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))) for _ in range(3000)]
    prompts, responses = [], []
    for _ in range(n):
        if rng.random() < 0.7:
            hist = [rng.choice(items) for _ in range(rng.randint(1, 10))]
            prompts.append("The user bought, in order: "
                           + "; ".join(f"{format_sid(s)} {t}" for s, t in hist)
                           + ". Predict the next item:")
            responses.append(format_sid(rng.choice(items)[0]))
        else:
            sid, title = rng.choice(items)
            prompts.append(f"What is the title of item {format_sid(sid)}?")
            responses.append(title)
    texts = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(3000)]
    return prompts, responses, texts


def run_ours(model, corpus: TokenizedCorpus, pad_id: int, args, **over) -> dict:
    with tempfile.TemporaryDirectory() as work:
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=1e-3, warmup_steps=10,
                          max_length=args.max_length, eval_every=0, checkpoint_every=0,
                          log_every=50, work_dir=work, resume="never", progress_bar=False,
                          autocast=over.pop("autocast", "off"),
                          device="cpu" if args.device == "cpu" else "auto", **over)
        start = time.perf_counter()
        result = train_sft(model, corpus, None, cfg, pad_id=pad_id, stage="bench")
        synchronize()
        wall = time.perf_counter() - start
    return {"wall_s": wall, "tokens": result.summary["tokens_seen"],
            "steps": result.summary["steps"], "loop_s": result.summary["train_seconds"]}


def run_trainer(model, corpus: TokenizedCorpus, tokenizer, args, strategy: str) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    data = [{"input_ids": corpus.ids(i).tolist(), "labels": corpus.labels(i).tolist()}
            for i in range(len(corpus))]
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
            learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=10, weight_decay=0.01,
            adam_beta2=0.95, max_grad_norm=1.0, logging_steps=50, save_strategy="no",
            eval_strategy="no", report_to="none", use_cpu=args.device == "cpu",
            dataloader_num_workers=0,
            disable_tqdm=True, seed=0, train_sampling_strategy=strategy, optim="adamw_torch")
        trainer = Trainer(model=model, args=targs, train_dataset=data,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True))
        start = time.perf_counter()
        out_ = trainer.train()
        synchronize()
        wall = time.perf_counter() - start
    n_full = (len(corpus) // args.batch_size) * args.batch_size
    tokens = int(corpus.lengths.sum()) if n_full == len(corpus) else None
    return {"wall_s": wall, "tokens": tokens, "steps": out_.global_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: steadier figures on a shared machine)")
    ap.add_argument("--variants", action="store_true", help="also time pack/random/bf16/full head")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sft.json")
    add_device_arg(ap)
    args = ap.parse_args()
    if args.examples % args.batch_size:
        ap.error("--examples must be a multiple of --batch-size (both loops see every example)")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    args.device = resolve(args.device).type

    prompts, responses, texts = make_corpus(args.examples)
    sids = sid_tokens(LEVELS, CODEBOOK)
    tok = train_tokenizer([*texts, *prompts, *responses], TokenizerConfig(vocab_size=args.vocab_size),
                          sids)
    corpus, report = tokenize_sft(prompts, responses, tok, args.max_length)
    bcfg = BackboneConfig(preset=args.preset)

    def model():
        return build_model(bcfg, tok, seed=0, sid_tokens=sids)

    runs = {"ours": lambda: run_ours(model(), corpus, tok.pad_token_id, args),
            "trainer": lambda: run_trainer(model(), corpus, tok, args, "random"),
            "trainer_group_by_length": lambda: run_trainer(model(), corpus, tok, args,
                                                           "group_by_length")}
    if args.variants:
        runs.update({
            "ours_pack": lambda: run_ours(model(), corpus, tok.pad_token_id, args, batching="pack"),
            "ours_random": lambda: run_ours(model(), corpus, tok.pad_token_id, args,
                                            batching="random"),
            "ours_bf16": lambda: run_ours(model(), corpus, tok.pad_token_id, args,
                                          autocast="bf16"),
            "ours_full_head": lambda: run_ours(model(), corpus, tok.pad_token_id, args,
                                               selective_head=False),
        })
    samples: dict[str, list[dict]] = {k: [] for k in runs}
    for rep in range(args.repeats):
        for name, fn in runs.items():
            res = fn()
            res["tokens_per_s"] = (res["tokens"] or int(corpus.lengths.sum())) / res["wall_s"]
            samples[name].append(res)
            print(f"repeat {rep} {name}: {res['tokens_per_s']:.0f} tokens/s "
                  f"({res['wall_s']:.1f} s)", flush=True)
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in samples.items()}
    lens = corpus.lengths
    result = {
        "goal_ratio": GOAL_RATIO,
        "ratio_vs_trainer": med["ours"] / med["trainer"],
        "ratio_vs_trainer_group_by_length": med["ours"] / med["trainer_group_by_length"],
        "meets_goal": med["ours"] / med["trainer"] >= GOAL_RATIO,
        "median_tokens_per_s": med,
        "runs": samples,
        "setup": {"examples": args.examples, "batch_size": args.batch_size,
                  "preset": args.preset, "vocab": len(tok), "max_length": args.max_length,
                  "threads": args.threads, "repeats": args.repeats,
                  "tokens_per_epoch": int(lens.sum()), "mean_length": float(lens.mean()),
                  "labelled_share": float(corpus.n_labels.sum() / lens.sum()),
                  "truncated": report.truncated,
                  "torch": torch.__version__, "python": platform.python_version(),
                  "cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
                  **describe(torch.device(args.device))},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("ratio_vs_trainer",
                                             "ratio_vs_trainer_group_by_length",
                                             "median_tokens_per_s")}, indent=2))


if __name__ == "__main__":
    main()
