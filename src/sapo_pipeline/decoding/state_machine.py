"""One decoding state machine for the step-aligned layout, vectorised over rows.

Reasoning mode (METHOD.md §2), for each step ``k = 0 .. K-1``::

    <think>   forced
    z_k       free text: any token but SID tokens, <think>, eos, pad, bos and the tokenizer's
              other special tokens; at most
              ``max_think_tokens`` of them; </think> may be chosen once ``min_think_tokens``
              were generated and is forced at the cap
    </think>
    s_k       one SID token of level k, restricted to the trie children of the prefix so far

then eos (forced). Plain mode (models without reasoning): ``s_0 .. s_{K-1}`` then eos.

Per row the machine says what may come next (:meth:`StepMachine.constraint`): whether the next
token is forced (``<think>``, eos, ``</think>`` at the cap, a SID token whose prefix has a single
child) and which token, or the free-text / SID-choice rule; the step id of the next token
(eos belongs to step K-1). :meth:`StepMachine.advance` moves every row by one token and raises
:class:`ConstraintError` for a token the rule forbids -- in particular a SID whose prefix is not a
catalog prefix: the machine is never silently unconstrained (METHOD.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from sapo_pipeline.decoding.constraint import ConstraintIndex
from sapo_pipeline.decoding.vocab import SIDVocab
from sapo_pipeline.sid.catalog import format_sid

OPEN, THINK, SID, EOS, DONE = 0, 1, 2, 3, 4
PHASES = ("open", "think", "sid", "eos", "done")


class ConstraintError(ValueError):
    """A token the step-aligned layout or the catalog trie does not allow."""


@dataclass
class MachineState:
    """Decoding state of ``n`` rows (all long tensors)."""

    phase: torch.Tensor  # [n]: OPEN | THINK | SID | EOS | DONE
    level: torch.Tensor  # [n]: current step k (K once the SID is complete)
    node: torch.Tensor  # [n]: trie node of the SID prefix so far (-1 once complete)
    think_len: torch.Tensor  # [n]: free tokens in the current block
    codes: torch.Tensor  # [n, K]: SID codes chosen so far (-1 unset)
    think_lengths: torch.Tensor  # [n, K]: free tokens of each finished block (-1 unset)
    cap_hits: torch.Tensor  # [n]: blocks closed by the cap

    def select(self, idx: torch.Tensor) -> MachineState:
        """Rows ``idx`` (repeats allowed): reordering, beam expansion, compaction."""
        return MachineState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return int(self.phase.shape[0])

    @property
    def done(self) -> torch.Tensor:
        return self.phase == DONE


@dataclass
class Constraint:
    """What each row may generate next (all ``[n]``)."""

    forced: torch.Tensor  # bool: exactly one token is allowed
    forced_token: torch.Tensor  # long: that token (pad for finished rows)
    free: torch.Tensor  # bool: free thinking text (vocabulary minus the banned ids)
    close_ok: torch.Tensor  # bool: a free row may choose </think>
    choice: torch.Tensor  # bool: a SID token among >= 2 trie children
    step: torch.Tensor  # long: step id of the next token (-1 for finished rows)


class StepMachine:
    """The step-aligned (or plain) layout as tensor rules; see the module docstring."""

    def __init__(self, index: ConstraintIndex, vocab: SIDVocab, *, reasoning: bool,
                 max_think_tokens: int = 64, min_think_tokens: int = 1) -> None:
        if index.levels != vocab.levels:
            raise ValueError("StepMachine: index and vocab disagree on the number of levels")
        if max_think_tokens < 0 or not 0 <= min_think_tokens <= max_think_tokens:
            raise ValueError(f"StepMachine: need 0 <= min_think_tokens <= max_think_tokens, got "
                             f"{min_think_tokens}, {max_think_tokens}")
        self.index, self.vocab = index, vocab
        self.reasoning = bool(reasoning)
        self.levels = index.levels
        self.cap, self.min_think = int(max_think_tokens), int(min_think_tokens)
        self.open_id, self.close_id = vocab.think_open_id, vocab.think_close_id
        self.eos_id, self.pad_id = vocab.eos_id, vocab.pad_id
        self._think_ok = torch.ones(vocab.vocab_size, dtype=torch.bool)  # free-text ids
        self._think_ok[vocab.banned_in_think()] = False
        self._think_ok[self.close_id] = False
        self._bias: dict[int, torch.Tensor] = {}
        self._runs: dict[int, list[tuple[int, int]]] = {}

    # -- sizes ---------------------------------------------------------------------------
    @property
    def max_response_tokens(self) -> int:
        """Longest response the machine allows (eos included)."""
        per_step = self.cap + 3 if self.reasoning else 1
        return self.levels * per_step + 1

    def think_bias(self, width: int) -> torch.Tensor:
        """Additive logits mask ``[width]`` of a free row: 0 on free-text ids and </think>."""
        bias = self._bias.get(width)
        if bias is None:
            bias = torch.full((width,), float("-inf"))
            n = min(width, self.vocab.vocab_size)
            bias[:n].masked_fill_(self._think_ok[:n], 0.0)
            bias[self.close_id] = 0.0
            self._bias[width] = bias
        return bias

    #: greedy blocks pick their token by :meth:`greedy_think` (False: the former masked copy of
    #: the logits, the same tokens; the decoding benchmark's baseline)
    greedy_views = True

    def _think_runs(self, width: int) -> list[tuple[int, int]]:
        """The free-text ids of a ``width``-wide logits row (</think> left out) as ascending
        half-open runs ``[a, b)``."""
        runs = self._runs.get(width)
        if runs is None:
            ok = self.think_bias(width) == 0
            ok[self.close_id] = False
            edges = torch.diff(ok.to(torch.int8), prepend=torch.zeros(1, dtype=torch.int8),
                               append=torch.zeros(1, dtype=torch.int8)).nonzero().flatten()
            runs = [(int(a), int(b)) for a, b in edges.reshape(-1, 2).tolist()]
            self._runs[width] = runs
        return runs

    def greedy_think(self, logits: torch.Tensor, rows: torch.Tensor,
                     close_ok: torch.Tensor) -> torch.Tensor:
        """The greedy token of free rows ``rows`` of ``logits``: the first maximum over the
        free-text ids and, where ``close_ok``, ``</think>`` -- the argmax of the logits plus
        :meth:`think_bias` with </think> banned where not ``close_ok``, computed over views of
        the logits' free-text runs, so no masked copy of ``[rows, V]`` is made."""
        runs = self._think_runs(logits.shape[1])
        if len(runs) > 8:  # a scattered banned set: one masked copy is cheaper than many views
            s = logits[rows] + self.think_bias(logits.shape[1])
            s[:, self.close_id].masked_fill_(~close_ok, float("-inf"))
            return s.max(-1).indices
        src = logits if 2 * len(rows) >= len(logits) else logits[rows]
        best_v = best_i = None
        for a, b in runs:
            v, i = src[:, a:b].max(-1)
            if best_v is None:
                best_v, best_i = v, i + a
            else:  # a later run wins only on a strictly larger value: the first maximum
                take = v > best_v
                best_v, best_i = torch.where(take, v, best_v), torch.where(take, i + a, best_i)
        if src is logits and len(rows) != len(logits):
            best_v, best_i = best_v[rows], best_i[rows]
        close = src[:, self.close_id] if src is not logits else logits[rows, self.close_id]
        take = close_ok & ((close > best_v) | ((close == best_v) & (self.close_id < best_i)))
        return torch.where(take, self.close_id, best_i)

    # -- state ---------------------------------------------------------------------------
    def start(self, n: int) -> MachineState:
        """``n`` rows at the start of a response."""
        zeros = torch.zeros(n, dtype=torch.long)
        return MachineState(
            phase=torch.full((n,), OPEN if self.reasoning else SID, dtype=torch.long),
            level=zeros.clone(), node=zeros.clone(), think_len=zeros.clone(),
            codes=torch.full((n, self.levels), -1, dtype=torch.long),
            think_lengths=torch.full((n, self.levels), -1, dtype=torch.long),
            cap_hits=zeros.clone())

    def constraint(self, st: MachineState) -> Constraint:
        """The rule for each row's next token."""
        ph, idx = st.phase, self.index
        at_cap = (ph == THINK) & (st.think_len >= self.cap)
        sid = ph == SID
        node = st.node.clamp(min=0)
        kids = torch.where(sid, idx.n_children[node], 0)
        single = sid & (kids == 1)
        level = st.level.clamp(max=self.levels - 1)
        forced_tok = torch.full_like(ph, self.pad_id)
        forced_tok = torch.where(ph == OPEN, self.open_id, forced_tok)
        forced_tok = torch.where(ph == EOS, self.eos_id, forced_tok)
        forced_tok = torch.where(at_cap, self.close_id, forced_tok)
        forced_tok = torch.where(single, idx.level_ids[level, idx.first_child[node]], forced_tok)
        free = (ph == THINK) & ~at_cap
        return Constraint(
            forced=(ph == OPEN) | (ph == EOS) | at_cap | single,
            forced_token=forced_tok,
            free=free,
            close_ok=free & (st.think_len >= self.min_think),
            choice=sid & (kids >= 2),
            step=torch.where(ph == DONE, -1, level),
        )

    def candidates(self, st: MachineState, rows: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate SID token ids ``[len(rows), C_max]`` of ``rows`` and which are allowed."""
        return self.index.candidates(st.level[rows].clamp(max=self.levels - 1), st.node[rows])

    def advance(self, st: MachineState, tokens: torch.Tensor,
                rows: torch.Tensor | None = None) -> None:
        """Move each (unfinished, selected) row by its token, in place; ConstraintError if a
        token breaks the layout or leaves the catalog trie."""
        tokens = tokens.long()
        ph = st.phase
        act = ph != DONE if rows is None else (ph != DONE) & rows
        v = self.vocab.vocab_size
        in_vocab = (tokens >= 0) & (tokens < v)
        tok = tokens.clamp(0, v - 1)
        is_open, is_think = act & (ph == OPEN), act & (ph == THINK)
        is_sid, is_eos = act & (ph == SID), act & (ph == EOS)
        close = tokens == self.close_id
        think_ok = torch.where(close, st.think_len >= self.min_think,
                               in_vocab & self._think_ok[tok] & (st.think_len < self.cap))
        lvl = torch.where(in_vocab, self.vocab.token_level[tok], -1)
        code = torch.where(in_vocab, self.vocab.token_code[tok], -1)
        code_c = code.clamp(0, self.index.cmax - 1)
        node_c = st.node.clamp(min=0)
        sid_ok = ((lvl == st.level) & (code >= 0) & (code < self.index.cmax) & (st.node >= 0)
                  & self.index.children_ok[node_c, code_c])
        bad = ((is_open & (tokens != self.open_id)) | (is_eos & (tokens != self.eos_id))
               | (is_think & ~think_ok) | (is_sid & ~sid_ok))
        if bad.any():
            self._raise(st, tokens, int(bad.nonzero()[0, 0]), lvl, code)
        end_block = is_think & close
        if end_block.any():
            r = end_block.nonzero().flatten()
            st.think_lengths[r, st.level[r]] = st.think_len[r]
            st.cap_hits += (end_block & (st.think_len >= self.cap)).long()
        if is_sid.any():
            r = is_sid.nonzero().flatten()
            st.codes[r, st.level[r]] = code[r]
        new_level = st.level + is_sid.long()
        last = new_level >= self.levels
        after_sid = torch.where(last, EOS, OPEN if self.reasoning else SID)
        phase = torch.where(is_open, THINK, ph)
        phase = torch.where(end_block, SID, phase)
        phase = torch.where(is_sid, after_sid, phase)
        phase = torch.where(is_eos, DONE, phase)
        st.think_len = torch.where(is_open, 0, st.think_len + (is_think & ~close).long())
        st.node = torch.where(is_sid, self.index.child_node[node_c, code_c].long(), st.node)
        st.level, st.phase = new_level, phase

    def _raise(self, st: MachineState, tokens: torch.Tensor, r: int, lvl: torch.Tensor,
               code: torch.Tensor) -> None:
        ph, tok = int(st.phase[r]), int(tokens[r])
        where = f"row {r}, step {int(st.level[r])}, phase {PHASES[ph]}"
        if ph == SID:
            prefix = tuple(int(c) for c in st.codes[r, : int(st.level[r])])
            if int(lvl[r]) == int(st.level[r]):
                longer = (*prefix, int(code[r]))
                raise ConstraintError(f"{where}: SID prefix {longer} ({format_sid(longer)}) is "
                                      f"not a prefix of any catalog item")
            raise ConstraintError(f"{where}: token {tok} is not a SID token of level "
                                  f"{int(st.level[r])} (after prefix {prefix})")
        if ph == THINK:
            n = int(st.think_len[r])
            raise ConstraintError(f"{where}: token {tok} not allowed after {n} thinking tokens "
                                  f"(cap {self.cap}, min {self.min_think}; SID tokens, <think>, "
                                  f"eos and pad are banned inside a block)")
        want = self.open_id if ph == OPEN else self.eos_id
        raise ConstraintError(f"{where}: token {tok} where the forced token {want} must come")

    # -- masks and replay ----------------------------------------------------------------
    def dense_mask(self, st: MachineState, width: int) -> torch.Tensor:
        """Allowed next tokens as a bool ``[n, width]`` (finished rows: pad only)."""
        con = self.constraint(st)
        n = len(st)
        mask = torch.zeros((n, width + 1), dtype=torch.bool)
        mask[:, :width] = (self.think_bias(width) == 0)[None] & con.free[:, None]
        mask[:, self.close_id] = con.close_ok
        rows = con.choice.nonzero().flatten()
        if len(rows):
            ids, ok = self.candidates(st, rows)
            mask[rows[:, None], torch.where(ok, ids, width)] = ok
        one = con.forced | st.done
        mask[one] = False
        mask[one, con.forced_token[one]] = True
        return mask[:, :width]

    def logits_mask(self, st: MachineState, width: int) -> torch.Tensor:
        """:meth:`dense_mask` as an additive logits mask (0 allowed, -inf not)."""
        out = torch.zeros((len(st), width))
        return out.masked_fill_(~self.dense_mask(st, width), float("-inf"))

    def replay(self, responses: Sequence[Sequence[int]]) -> MachineState:
        """State after the given (possibly partial) responses; ConstraintError when one breaks
        the rules. Rows may have different lengths."""
        st = self.start(len(responses))
        width = max((len(r) for r in responses), default=0)
        if width == 0:
            return st
        toks = torch.full((len(responses), width), self.pad_id, dtype=torch.long)
        lens = torch.tensor([len(r) for r in responses])
        for i, r in enumerate(responses):
            toks[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        for t in range(width):
            live = lens > t
            if (live & st.done).any():
                r = int((live & st.done).nonzero()[0, 0])
                raise ConstraintError(f"row {r}: token after eos at position {t}")
            self.advance(st, toks[:, t], rows=live)
        return st

    def step_ids(self, responses: Sequence[Sequence[int]]) -> list[list[int]]:
        """Step id of each token of complete or partial responses (eos: step K-1)."""
        st = self.start(len(responses))
        out: list[list[int]] = [[] for _ in responses]
        width = max((len(r) for r in responses), default=0)
        for t in range(width):
            live = torch.tensor([len(r) > t for r in responses])
            tok = torch.tensor([r[t] if len(r) > t else self.pad_id for r in responses])
            step = self.constraint(st).step
            for i in live.nonzero().flatten().tolist():
                out[i].append(int(step[i]))
            self.advance(st, tok, rows=live)
        return out
