"""Tiny, learnable SFT corpora and SID tables for the test_sft_* modules (no teacher needed).

The next item is a fixed function of the last history item, so a tiny model can learn it.
"""

from __future__ import annotations

import random

import polars as pl

from sapo_pipeline.sid.catalog import build_sid_table, format_sid

WORDS = ["red", "blue", "pen", "desk", "lamp", "paper", "office", "chair", "ink", "clip",
         "stapler", "folder", "tape", "board", "marker", "binder"]
LEVEL_WORDS = ["category", "subtype", "item"]


def sid_table(n_items: int = 24, codebook: int = 4, levels: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = random.Random(seed)
    every = [(a, b, c) for a in range(codebook) for b in range(codebook) for c in range(codebook)]
    codes = rng.sample(every, n_items) if levels == 3 else None
    return build_sid_table(list(range(100, 100 + n_items)), codes)


def _title(item: int) -> str:
    return f"{WORDS[item % len(WORDS)]} {WORDS[(item * 5 + 3) % len(WORDS)]} {item}"


def next_item(last: int, n_items: int) -> int:
    return (last * 7 + 3) % n_items


def reasoning_response(codes: tuple[int, ...]) -> str:
    parts = []
    for level, code in enumerate(codes):
        parts.append(f"<think> the {LEVEL_WORDS[level]} is {WORDS[code]} </think>"
                     f"<{'abc'[level]}_{code}>")
    return "".join(parts)


def corpora(table: pl.DataFrame, n_rows: int = 240, valid_share: float = 0.2, seed: int = 0,
            filler: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(alignment_corpus, reasoning_corpus) following the corpus contract."""
    rng = random.Random(seed)
    codes = [tuple(c) for c in table["codes"].to_list()]
    n = len(codes)
    align, reason = [], []
    for sid in range(n_rows):
        hist = [rng.randrange(n) for _ in range(rng.randint(1, 5))]
        target = next_item(hist[-1], n)
        split = "valid" if rng.random() < valid_share else "train"
        noise = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, filler)))
        prompt = ("The user bought " + ", ".join(format_sid(codes[h]) for h in hist)
                  + (f" ({noise})" if noise else "") + ". Next item:")
        align.append(("seq_sid", prompt, format_sid(codes[target]), split, sid))
        item = rng.randrange(n)
        align.append(("title_to_sid", f"Item titled {_title(item)}. Its SID:",
                      format_sid(codes[item]), split, sid))
        align.append(("sid_to_title", f"Item {format_sid(codes[item])}. Its title:", _title(item),
                      split, sid))
        reason.append(("reasoning", prompt, reasoning_response(codes[target]), split, sid))
    schema = {"task": pl.Utf8, "prompt": pl.Utf8, "response": pl.Utf8, "split": pl.Utf8,
              "source_id": pl.Int64}
    return (pl.DataFrame(align, schema=schema, orient="row"),
            pl.DataFrame(reason, schema=schema, orient="row"))
