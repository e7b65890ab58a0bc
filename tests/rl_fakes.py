"""Test doubles for the RL tests: a toy vocabulary, a tiny model, a rollout source that samples
step-aligned responses from the model (trie-constrained SID tokens, forced markers), and a
hand-written rollout. Imported by the other ``test_rl_*`` modules; its own tests check the fakes.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from sapo_pipeline.decoding.types import Rollout
from sapo_pipeline.rl.prompts import PromptSet
from sapo_pipeline.sid.catalog import SIDTrie

PAD, EOS, THINK_OPEN, THINK_CLOSE = 0, 1, 2, 3
WORDS = (4, 5, 6, 7)
CODES = 4  # codes per level
LEVELS = 3
VOCAB = 32
PROMPT_BASE = 20

# A small catalog: prefix (2,) has a single child and (2, 0) too -> forced SID tokens.
CATALOG = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)] + [(2, 0, 0)]


def sid_id(level: int, code: int) -> int:
    return 8 + level * CODES + code


def tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                          max_position_embeddings=64, pad_token_id=PAD, eos_token_id=EOS,
                          bos_token_id=EOS, tie_word_embeddings=True)
        cfg._attn_implementation = "eager"
        return Qwen2ForCausalLM(cfg).eval()


def toy_trie() -> SIDTrie:
    return SIDTrie(range(len(CATALOG)), np.array(CATALOG))


def toy_prompts(n: int = 8, seed: int = 0) -> PromptSet:
    """n prompts of 3 tokens; prompt i's target is catalog item i % 9 (learnable from token 2)."""
    rng = np.random.default_rng(seed)
    ids, targets = [], []
    for i in range(n):
        item = i % len(CATALOG)
        ids.append([EOS, PROMPT_BASE + item, PROMPT_BASE + 9 + int(rng.integers(0, 3))])
        targets.append(CATALOG[item])
    return PromptSet(ids, np.array(targets), list(range(n)))


class ToySource:
    """Step k: ``<think>`` forced, ``think_len`` sampled word tokens (capped by
    max_think_tokens), ``</think>`` forced, the SID token sampled among the trie children (forced
    when there is one child); eos forced after step K. Full-vocabulary log-probabilities of the
    taken tokens at ``temperature``; deterministic for a seed.

    ``seed_by_prompt``: each row draws from its own generator seeded by (prompt, call number,
    row in group), ignoring ``seed`` -- the same responses however prompts are sharded across
    processes (for the DDP-equals-one-process test)."""

    def __init__(self, trie: SIDTrie, think_len: int = 2, beams: bool = False,
                 seed_by_prompt: bool = False) -> None:
        self.trie, self.think_len, self.beams = trie, think_len, beams
        self.seed_by_prompt = seed_by_prompt
        self.calls = 0

    def describe(self) -> dict:
        return {"toy": True, "think_len": self.think_len, "beams": self.beams,
                "seed_by_prompt": self.seed_by_prompt}

    @torch.no_grad()
    def sample(self, model, prompt_ids, targets, group_size, *, seed, temperature, top_p,
               max_think_tokens, prompt_keys=None) -> Rollout:
        self.calls += 1
        p = len(prompt_ids)
        if self.seed_by_prompt:
            gens = [torch.Generator().manual_seed(
                        int(np.random.SeedSequence([*prompt, self.calls, j]).generate_state(1)[0]))
                    for prompt in prompt_ids for j in range(group_size)]
        else:
            gens = [torch.Generator().manual_seed(seed % (2**63))] * (p * group_size)
        lengths = {len(x) for x in prompt_ids}
        assert len(lengths) == 1, "ToySource wants prompts of one length"
        plen = lengths.pop()
        n = p * group_size
        seq = torch.tensor([list(x) for x in prompt_ids for _ in range(group_size)])
        sampled, steps, logps = [], [], []
        prefixes: list[tuple[int, ...]] = [() for _ in range(n)]
        think = min(self.think_len, max_think_tokens)

        def step_token(allowed: list[list[int]] | None, forced: int | None, k: int) -> None:
            nonlocal seq
            logits = model(input_ids=seq).logits[:, -1].float() / temperature
            logp = torch.log_softmax(logits, dim=-1)
            if forced is not None:
                tok = torch.full((n,), forced)
                smp = torch.zeros(n, dtype=torch.bool)
            else:
                tok = torch.empty(n, dtype=torch.long)
                smp = torch.ones(n, dtype=torch.bool)
                for i in range(n):
                    ids = allowed[i]
                    if len(ids) == 1:
                        tok[i], smp[i] = ids[0], False
                        continue
                    probs = torch.softmax(logits[i, ids], dim=0)
                    tok[i] = ids[int(torch.multinomial(probs, 1, generator=gens[i]))]
            logps.append(logp.gather(1, tok[:, None])[:, 0])
            sampled.append(smp)
            steps.append(torch.full((n,), k))
            seq = torch.cat([seq, tok[:, None]], dim=1)

        for k in range(LEVELS):
            step_token(None, THINK_OPEN, k)
            for _ in range(think):
                step_token([list(WORDS)] * n, None, k)
            step_token(None, THINK_CLOSE, k)
            allowed = [[sid_id(k, int(c)) for c in self.trie.children(prefixes[i])]
                       for i in range(n)]
            step_token(allowed, None, k)
            last = seq[:, -1]
            prefixes = [prefixes[i] + (int(last[i]) - 8 - k * CODES,) for i in range(n)]
        step_token(None, EOS, LEVELS - 1)
        t = seq.shape[1]
        resp = torch.zeros(n, t, dtype=torch.bool)
        resp[:, plen:] = True
        smask = torch.zeros_like(resp)
        smask[:, plen:] = torch.stack(sampled, dim=1)
        sids = torch.full((n, t), -1, dtype=torch.long)
        sids[:, plen:] = torch.stack(steps, dim=1)
        old = torch.zeros(n, t)
        old[:, plen:] = torch.stack(logps, dim=1)
        codes = torch.tensor(prefixes)
        group = torch.arange(p).repeat_interleave(group_size)
        rank = None
        if self.beams:  # "beams": rank by the sum of the SID tokens' log-probabilities
            score = (old * (sids >= 0) * smask).sum(dim=1)
            rank = torch.empty(n, dtype=torch.long)
            for g in range(p):
                rows = torch.nonzero(group == g).flatten()
                order = rows[torch.argsort(-score[rows], stable=True)]
                rank[order] = torch.arange(len(rows))
        return Rollout(sequences=seq, attention_mask=torch.ones(n, t, dtype=torch.bool),
                       response_mask=resp, sampled_mask=smask, step_ids=sids, old_logprobs=old,
                       sid_codes=codes, group_index=group, target_codes=targets[group].cpu(),
                       prompt_lengths=torch.full((n,), plen), beam_rank=rank,
                       stats={"calls": float(self.calls)})


def hand_rollout() -> Rollout:
    """Two groups of 2 responses, K = 2, written out token by token.

    Row layout (P = prompt, t = <think>, w = word, /t = </think>, s = SID token, e = eos, . = pad)
    with ``*`` marking sampled tokens (the others are forced):

        row 0 (group 0): P P | t w* w* /t s1* | t w* /t s2* | e*   .   target (1, 0) sid (1, 0)
        row 1 (group 0): P P | t w* w* /t s1* | t w* /t s2  | e    .   target (1, 0) sid (1, 1)
        row 2 (group 1): P P | t w* /t s1*    | t w* w* /t s2* | e    target (0, 1) sid (0, 1)
        row 3 (group 1): P P | t w* /t s1*    | t w* w* /t s2* | e    target (0, 1) sid (1, 1)

    Row 1's second SID token is forced (a single trie child), so step 2 of row 1 has one
    loss-carrying token (its word); row 0's eos was sampled (a decoder that lets the policy end),
    the other eos tokens are forced.
    """
    n, t = 4, 13
    seq = torch.zeros(n, t, dtype=torch.long)
    att = torch.zeros(n, t, dtype=torch.bool)
    resp = torch.zeros_like(att)
    smp = torch.zeros_like(att)
    steps = torch.full((n, t), -1, dtype=torch.long)
    # (token, step, sampled) per response position
    t_, w_, c_ = THINK_OPEN, WORDS[0], THINK_CLOSE
    layouts = [
        [(t_, 0, 0), (w_, 0, 1), (w_, 0, 1), (c_, 0, 0), (sid_id(0, 1), 0, 1),
         (t_, 1, 0), (w_, 1, 1), (c_, 1, 0), (sid_id(1, 0), 1, 1), (EOS, 1, 1)],
        [(t_, 0, 0), (w_, 0, 1), (w_, 0, 1), (c_, 0, 0), (sid_id(0, 1), 0, 1),
         (t_, 1, 0), (w_, 1, 1), (c_, 1, 0), (sid_id(1, 1), 1, 0), (EOS, 1, 0)],
        [(t_, 0, 0), (w_, 0, 1), (c_, 0, 0), (sid_id(0, 0), 0, 1),
         (t_, 1, 0), (w_, 1, 1), (w_, 1, 1), (c_, 1, 0), (sid_id(1, 1), 1, 1), (EOS, 1, 0)],
        [(t_, 0, 0), (w_, 0, 1), (c_, 0, 0), (sid_id(0, 1), 0, 1),
         (t_, 1, 0), (w_, 1, 1), (w_, 1, 1), (c_, 1, 0), (sid_id(1, 1), 1, 1), (EOS, 1, 0)],
    ]
    for i, lay in enumerate(layouts):
        seq[i, :2] = torch.tensor([EOS, PROMPT_BASE + i])
        att[i, :2] = True
        for j, (tok, k, s) in enumerate(lay):
            seq[i, 2 + j], att[i, 2 + j], resp[i, 2 + j] = tok, True, True
            smp[i, 2 + j], steps[i, 2 + j] = bool(s), k
    return Rollout(sequences=seq, attention_mask=att, response_mask=resp, sampled_mask=smp,
                   step_ids=steps, old_logprobs=torch.zeros(n, t),
                   sid_codes=torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1]]),
                   group_index=torch.tensor([0, 0, 1, 1]),
                   target_codes=torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]]),
                   prompt_lengths=torch.full((n,), 2), beam_rank=torch.tensor([0, 1, 1, 0]))


# ---------------------------------------------------------------- tests of the fakes
