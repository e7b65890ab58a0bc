"""A synthetic catalog, tokenizer and prompts shared by the decoding and RL benchmarks.

``--items`` SIDs over 3 levels x 256 codes (first level skewed, as residual quantisation gives),
a byte-level BPE tokenizer trained on generated prompts (histories of SIDs and titles), and
prompts "The user bought: <history of 3-10 SIDs>\\nNext item: ".
"""

from __future__ import annotations

import random
from typing import Any

from sapo_pipeline.decoding import SIDVocab
from sapo_pipeline.model.tokenizer import TokenizerConfig, train_tokenizer
from sapo_pipeline.sid.catalog import SIDTrie, format_sid, sid_tokens

LEVELS, CODEBOOK = 3, 256


def make_world(n_items: int, n_prompts: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    codes: set[tuple[int, ...]] = set()
    while len(codes) < n_items:  # skewed first level, as residual quantisation gives
        a = min(int(rng.expovariate(1 / 40)), CODEBOOK - 1)
        codes.add((a, rng.randrange(CODEBOOK), rng.randrange(CODEBOOK)))
    sids = sorted(codes)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    titles = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in sids]
    corpus, prompts_text = [], []
    for i in range(max(600, n_prompts)):
        hist = [rng.randrange(len(sids)) for _ in range(rng.randint(3, 10))]
        text = "The user bought: " + ", ".join(format_sid(sids[h]) for h in hist) + "\nNext item:"
        corpus.append(text + " " + "; ".join(titles[h] for h in hist))
        if i < n_prompts:
            prompts_text.append(text + " ")
    tok = train_tokenizer(corpus, TokenizerConfig(vocab_size=8000),
                          sid_tokens(LEVELS, CODEBOOK))
    prompts = [tok.encode(p, add_special_tokens=False) for p in prompts_text]
    trie = SIDTrie(range(len(sids)), sids)
    return {"tokenizer": tok, "trie": trie, "prompts": prompts, "sids": sids,
            "vocab": SIDVocab.from_tokenizer(tok, table=trie)}
