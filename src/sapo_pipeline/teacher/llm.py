"""What the LLM teachers (openai, hf) share: request messages, answer parsing, the cache.

Requests are chat messages (``[{"role": "system", ...}, {"role": "user", ...}]``) rendered from
the templates of :class:`~sapo_pipeline.teacher.config.TeacherRequestConfig`. The teacher never
sees a SID: item text is scrubbed of SID-like tokens and the hierarchy is described in words.

A reasoning answer must be ``Step 1: ...`` .. ``Step K: ...`` (hidden ``<think>...</think>``
reasoning of reasoning models is removed first; markdown bold ``**`` is dropped). Answers that do not parse are rejected with a
reason (``no_steps``, ``wrong_step_count``, ``steps_out_of_order``, ``empty_step``,
``block_too_long``, ``sid_in_block``, ``unclosed_think``) and counted; they are never used.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sapo_pipeline.teacher.base import ItemInfo, Outcome, ReasoningRequest, Teacher
from sapo_pipeline.teacher.cache import ResponseCache, cache_key
from sapo_pipeline.teacher.config import TeacherRequestConfig
from sapo_pipeline.teacher.layout import SID_LIKE, clean_block

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]

_STEP = re.compile(
    r"^[ \t>#*_\-]*step[ \t]*(\d+)[ \t]*(?:\*\*|__)?[ \t]*[:.)\-][ \t]*(?:\*\*|__)?",
    re.IGNORECASE | re.MULTILINE,
)
_HIDDEN = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


class AnswerError(ValueError):
    """A teacher answer cannot be used; ``reason`` is the short rejection reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def strip_hidden_reasoning(text: str) -> str:
    """Remove ``<think>...</think>`` spans; AnswerError('unclosed_think') if one stays open."""
    text = _HIDDEN.sub(" ", text)
    if re.search(r"<think>", text, re.IGNORECASE):
        raise AnswerError("unclosed_think")
    return text


def parse_step_answer(text: str, levels: int, max_block_chars: int) -> list[str]:
    """The ``levels`` block texts of a 'Step k:' answer; AnswerError naming what is off."""
    text = strip_hidden_reasoning(text)
    if SID_LIKE.search(text):
        raise AnswerError("sid_in_block")
    marks = list(_STEP.finditer(text))
    if not marks:
        raise AnswerError("no_steps")
    numbers = [int(m.group(1)) for m in marks]
    if numbers != list(range(1, len(numbers) + 1)):
        raise AnswerError("steps_out_of_order", str(numbers))
    if len(numbers) != levels:
        raise AnswerError("wrong_step_count", f"{len(numbers)} steps for {levels} levels")
    blocks = []
    for m, nxt in zip(marks, [*marks[1:], None]):
        block = clean_block(text[m.end():nxt.start() if nxt else len(text)].replace("**", ""))
        if not block:
            raise AnswerError("empty_step", f"step {len(blocks) + 1}")
        if len(block) > max_block_chars:
            raise AnswerError("block_too_long", f"step {len(blocks) + 1}: {len(block)} chars")
        blocks.append(block)
    return blocks


def parse_text_answer(text: str, max_chars: int) -> tuple[str, bool]:
    """A description / narrative answer: ``(text, truncated)``; AnswerError if unusable."""
    text = strip_hidden_reasoning(text)
    if SID_LIKE.search(text):
        raise AnswerError("sid_in_text")
    text = clean_block(text)
    if not text:
        raise AnswerError("empty_response")
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    ends = [m.start() for m in _SENTENCE_END.finditer(cut + " ")]
    cut = cut[:ends[-1]] if ends else cut.rsplit(" ", 1)[0]
    return cut.strip() or text[:max_chars], True


# -- request messages ------------------------------------------------------------------------
def _item_line(item: ItemInfo) -> str:
    extras = [x for x in (clean_block(item.fine_category), clean_block(item.brand)) if x]
    title = clean_block(item.title).replace("\n", " ") or "untitled product"
    return f"{title} ({', '.join(extras)})" if extras else title


def _history_text(history: Sequence[ItemInfo], max_items: int) -> str:
    shown = list(history)[-max_items:]
    if not shown:
        return "(no earlier purchases)"
    return "\n".join(f"{i}. {_item_line(item)}" for i, item in enumerate(shown, 1))


def describe_messages(cfg: TeacherRequestConfig, item: ItemInfo) -> Messages:
    desc = clean_block(item.description).replace("\n", " ")[: cfg.max_input_description_chars]
    user = cfg.describe_item.format(
        title=clean_block(item.title) or "untitled product",
        brand=clean_block(item.brand) or "unknown",
        categories=" > ".join(clean_block(c) for c in item.categories) or "unknown",
        description=desc or "none",
    )
    return [{"role": "system", "content": cfg.system}, {"role": "user", "content": user}]


def narrate_messages(cfg: TeacherRequestConfig, history: Sequence[ItemInfo]) -> Messages:
    user = cfg.narrate_user.format(history=_history_text(history, cfg.max_history_items))
    return [{"role": "system", "content": cfg.system}, {"role": "user", "content": user}]


def reason_messages(cfg: TeacherRequestConfig, req: ReasoningRequest) -> Messages:
    levels = len(req.codes)
    lines = []
    for k, summary in enumerate(req.hierarchy, 1):
        label = clean_block(summary.label()) or "a group of related products"
        words = ", ".join(clean_block(w) for w in summary.top_words(4))
        lines.append(f"Level {k}: {label}" + (f" (common words: {words})" if words else ""))
    lines.append(f"Level {levels}: the specific product")
    user = cfg.reason_steps.format(
        history=_history_text(req.history, cfg.max_history_items),
        target=_item_line(req.target),
        levels=levels,
        levels_text="\n".join(lines),
        format="\n".join(f"Step {k}: ..." for k in range(1, levels + 1)),
    )
    return [{"role": "system", "content": cfg.system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Completion:
    """One raw completion, or why none came back (transport failure, malformed body)."""

    text: str | None = None
    error: str | None = None


class LLMTeacher(Teacher):
    """A teacher that asks a language model; subclasses implement :meth:`_generate`."""

    def __init__(self, model: str, requests: TeacherRequestConfig,
                 cache: ResponseCache | None = None, log_every: int = 1000):
        super().__init__(model=model)
        self.requests = requests
        self.cache = cache
        self.log_every = max(1, int(log_every))

    @abstractmethod
    def generation_params(self) -> dict[str, Any]:
        """Everything besides the messages that determines an answer (part of the cache key)."""

    @abstractmethod
    def _generate(self, prompts: Sequence[Messages]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index, completion)`` for every prompt, in any order, as they finish."""

    def _complete(self, prompts: Sequence[Messages], kind: str) -> list[Completion]:
        params = self.generation_params()
        keys = [cache_key(self.backend, self.model, p, params) for p in prompts]
        results: dict[str, Completion] = {}
        todo: list[str] = []
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key in first:
                continue
            first[key] = i
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is not None:
                self.stats.add("cache_hits")
                results[key] = Completion(text=cached)
            else:
                if self.cache is not None:
                    self.stats.add("cache_misses")
                todo.append(key)
        log.info("teacher %s/%s %s: %d prompts, %d cached, %d to request", self.backend,
                 self.model, kind, len(prompts), len(first) - len(todo), len(todo))
        for done, (j, comp) in enumerate(self._generate([prompts[first[k]] for k in todo]), 1):
            key = todo[j]
            results[key] = comp
            if comp.text is not None and self.cache is not None:
                self.cache.put(key, self.backend, self.model, comp.text)
            if done % self.log_every == 0:
                log.info("teacher %s %s: %d / %d requests done", self.backend, kind, done,
                         len(todo))
        return [results[k] for k in keys]

    def _texts(self, prompts: Sequence[Messages], kind: str) -> list[Outcome]:
        out = []
        for comp in self._complete(prompts, kind):
            if comp.text is None:
                out.append(Outcome(error=comp.error or "no_response"))
                continue
            try:
                text, truncated = parse_text_answer(comp.text, self.requests.max_text_chars)
            except AnswerError as exc:
                out.append(Outcome(error=exc.reason))
                continue
            if truncated:
                self.stats.note(f"{kind}_truncated")
            out.append(Outcome(value=text))
        return self._count(kind, out)

    def describe_items(self, items: Sequence[ItemInfo]) -> list[Outcome]:
        return self._texts([describe_messages(self.requests, i) for i in items], "describe_item")

    def narrate_users(self, histories: Sequence[Sequence[ItemInfo]]) -> list[Outcome]:
        return self._texts([narrate_messages(self.requests, h) for h in histories],
                           "narrate_user")

    def reason_steps_batch(self, requests: Sequence[ReasoningRequest]) -> list[Outcome]:
        comps = self._complete([reason_messages(self.requests, r) for r in requests],
                               "reason_steps")
        out = []
        for req, comp in zip(requests, comps):
            if comp.text is None:
                out.append(Outcome(error=comp.error or "no_response"))
                continue
            try:
                blocks = parse_step_answer(comp.text, len(req.codes), self.requests.max_block_chars)
            except AnswerError as exc:
                out.append(Outcome(error=exc.reason))
                continue
            out.append(Outcome(value=blocks))
        return self._count("reason_steps", out)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None
