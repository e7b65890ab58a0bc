"""The model-facing prompts of every task, rendered from templates given in parameters.

One place decides how a history, a SID and a title are spelled in a prompt, so the SFT, RL and
evaluation code all show the model the same text. Templates are ``str.format`` strings; each task
may only use its own fields (:data:`TASK_FIELDS`), so a sequence prompt can never show the target.

History items are rendered oldest first with ``history_item_template`` (fields ``sid``, ``title``)
joined by ``history_separator``; ``{history}`` uses it. ``{history_titles}`` shows titles only,
joined by ``title_separator``. Titles are cut at a word boundary to ``max_title_chars`` and
scrubbed of SID-like text. A training example is ``join_example(prompt, response)`` = ``prompt + PROMPT_RESPONSE_SEP +
response`` (the SFT code masks the prompt part; eos is appended by the tokenisation code).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sapo_pipeline.teacher.layout import clean_block

#: Tasks of the alignment corpus (METHOD.md §2, stage 1), in report order.
ALIGNMENT_TASKS: tuple[str, ...] = (
    "sid_sequence",  # a user's SID sequence, every item after the first predicted (all positions)
    "seq_sid",  # history SIDs -> next SID (one target per row, prompt style)
    "title_to_sid",  # title -> SID
    "sid_to_title",  # SID -> title
    "seq_title",  # history SIDs -> next title
    "titles_to_sid",  # history titles -> next SID
    "sid_to_description",  # SID -> teacher-written item description
    "user_narrative",  # user history -> teacher-written narrative of the user's interests
)
#: The default Stage-1 mix: the all-position sequence task plus the item tasks. Measured on the
#: embedded default at equal Stage-1 steps (882), valid NDCG@10 of sid_only (1,000 rows):
#: sid_sequence alone .169, + item tasks .185, + history-text tasks .187, + all seven .146
#: (the sequence windows then get too few passes); the item tasks also teach the SID <-> title
#: links the reasoning blocks name. See the README.
DEFAULT_ALIGNMENT_TASKS: tuple[str, ...] = ("sid_sequence", "title_to_sid", "sid_to_title",
                                            "sid_to_description")
#: Tasks trained on every position: a row's labels are the SID tokens of every response item
#: (each predicted from the items before it), not a single target. Their template must end right
#: after ``{history}`` with the history separator (stripped), so the prompt of a history is the
#: training text of that history up to the next item: see :func:`continuation_check`.
ALL_POSITION_TASKS = frozenset({"sid_sequence"})
#: The reasoning corpus's task (stage 2): history -> step-aligned response.
REASONING_TASK = "reasoning"
TASKS: tuple[str, ...] = (*ALIGNMENT_TASKS, REASONING_TASK)
#: Tasks whose prompt is about one item (the others are about a history).
ITEM_TASKS = frozenset({"title_to_sid", "sid_to_title", "sid_to_description"})

_SEQ_FIELDS = frozenset({"history", "history_titles", "n_history"})
TASK_FIELDS: dict[str, frozenset[str]] = {
    "sid_sequence": frozenset({"history"}),
    "seq_sid": _SEQ_FIELDS,
    "title_to_sid": frozenset({"title"}),
    "sid_to_title": frozenset({"sid"}),
    "seq_title": _SEQ_FIELDS,
    "titles_to_sid": frozenset({"history_titles", "n_history"}),
    "sid_to_description": frozenset({"sid"}),
    "user_narrative": _SEQ_FIELDS,
    "reasoning": _SEQ_FIELDS,
}
DEFAULT_TEMPLATES: dict[str, str] = {
    "sid_sequence": "The user bought: {history},",
    "seq_sid": "The user bought: {history}\nNext item:",
    "title_to_sid": "Item: {title}\nItem ID:",
    "sid_to_title": "Item ID: {sid}\nTitle:",
    "seq_title": "The user bought: {history}\nTitle of the next item:",
    "titles_to_sid": "The user bought: {history_titles}\nNext item ID:",
    "sid_to_description": "Describe item {sid}:",
    "user_narrative": "The user bought: {history}\nDescribe the user's interests:",
    "reasoning": "The user bought: {history}\nThink step by step, then give the next item:",
}
#: What separates a prompt from its response in a training example.
PROMPT_RESPONSE_SEP = " "


def template_fields(template: str) -> set[str]:
    """Names of the ``{fields}`` a format string uses (ValueError on a malformed template)."""
    names = set()
    for _, name, _spec, _conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"template field {{{name}}} is not a plain name in {template!r}")
        names.add(name)
    return names


def cut_text(text: str, max_chars: int) -> str:
    """One line of ``text`` (SID-like text removed), cut at a word boundary to ``max_chars``.

    A cut never leaves an unclosed ``(``: the dangling parenthesis and what follows go.
    """
    text = clean_block(text).replace("\n", " ")
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    if cut.count("(") > cut.count(")"):
        cut = cut[:cut.rfind("(")]
    return cut.rstrip(" ,;:-/&(") or text[:max_chars]


def continuation_check(renderer: PromptRenderer, task: str, items: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the ``task`` prompt of ``items[:-1]`` is exactly the training
    text ``prompt(items[:1]) + " " + response(items[1:])`` cut before the last item: what makes
    an all-position model's training and decoding text agree."""
    if len(items) < 3:
        return
    text = join_example(renderer.prompt(task, history=items[:1]),
                        renderer.spell(items[1:]))
    prompt = renderer.prompt(task, history=items[:-1]) + PROMPT_RESPONSE_SEP
    if not text.startswith(prompt):
        raise ValueError(f"templates.{task}: the prompt of a history must continue into its next "
                         f"item as in training; end the template with '{{history}}' followed by "
                         f"history_separator without its trailing space (got "
                         f"{renderer.cfg.templates[task]!r} with history_separator "
                         f"{renderer.cfg.history_separator!r})")


def join_example(prompt: str, response: str) -> str:
    """The full training text of one example (eos not included)."""
    return prompt + PROMPT_RESPONSE_SEP + response


@dataclass
class PromptConfig:
    """Templates and spelling of the model-facing prompts."""

    templates: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Task -> str.format template overriding DEFAULT_TEMPLATES. Fields per "
                          "task: sequence tasks {history} {history_titles} {n_history}; "
                          "title_to_sid {title}; sid_to_title / sid_to_description {sid}."},
    )
    history_item_template: str = field(
        default="{sid}",
        metadata={"help": "How one history item is spelled in {history}: fields {sid} and "
                          "{title}, e.g. '{sid} ({title})' to show titles next to SIDs."},
    )
    history_separator: str = field(
        default=", ", metadata={"help": "Separator between history items in {history}."}
    )
    title_separator: str = field(
        default="; ",
        metadata={"help": "Separator between titles in {history_titles} (titles hold commas)."},
    )
    max_history: int | None = field(
        default=None,
        metadata={"help": "Show only the last N history items (null: the whole history)."},
    )
    max_title_chars: int = field(
        default=80, metadata={"help": "Titles (in prompts and title responses) are cut to this."}
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.templates) - set(TASKS))
        if unknown:
            raise ValueError(f"templates: unknown task(s) {unknown}; tasks are {list(TASKS)}")
        self.templates = {**DEFAULT_TEMPLATES, **dict(self.templates)}
        for task, tpl in self.templates.items():
            if not isinstance(tpl, str) or not tpl.strip():
                raise ValueError(f"templates.{task}: must be a non-empty string")
            extra = template_fields(tpl) - TASK_FIELDS[task]
            if extra:
                raise ValueError(f"templates.{task}: field(s) {sorted(extra)} not allowed; "
                                 f"use {sorted(TASK_FIELDS[task])}")
            if tpl != tpl.rstrip():
                raise ValueError(f"templates.{task}: must not end with whitespace "
                                 f"(PROMPT_RESPONSE_SEP joins prompt and response)")
        extra = template_fields(self.history_item_template) - {"sid", "title"}
        if extra or "sid" not in template_fields(self.history_item_template):
            raise ValueError("history_item_template: must use {sid} and may use {title}; "
                             f"got {self.history_item_template!r}")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"max_history must be >= 1 or null, got {self.max_history}")
        if self.max_title_chars < 8:
            raise ValueError(f"max_title_chars must be >= 8, got {self.max_title_chars}")


class PromptRenderer:
    """Renders prompts (and title responses) for item ids, from SIDs and titles by item id."""

    def __init__(self, cfg: PromptConfig, sids: Mapping[int, str], titles: Mapping[int, str]):
        self.cfg = cfg
        self._sids = sids
        self._titles = titles

    def sid(self, item_id: int) -> str:
        try:
            return self._sids[int(item_id)]
        except KeyError:
            raise KeyError(f"item {item_id} has no SID in the sid_table") from None

    def title(self, item_id: int) -> str:
        """The item's title as prompts and responses show it ('' when the item has none)."""
        return cut_text(self._titles.get(int(item_id)) or "", self.cfg.max_title_chars)

    def _window(self, history: Sequence[int]) -> list[int]:
        items = [int(i) for i in history]
        if self.cfg.max_history is not None:
            items = items[-self.cfg.max_history:]
        return items

    def spell(self, items: Sequence[int]) -> str:
        """``items`` spelled as ``{history}`` spells them (no ``max_history`` window)."""
        tpl = self.cfg.history_item_template
        return self.cfg.history_separator.join(
            tpl.format(sid=self.sid(i), title=self.title(i) or "untitled") for i in items)

    def history(self, history: Sequence[int]) -> str:
        return self.spell(self._window(history))

    def history_titles(self, history: Sequence[int]) -> str:
        return self.cfg.title_separator.join(
            self.title(i) or "untitled" for i in self._window(history))

    def prompt(self, task: str, *, history: Sequence[int] | None = None,
               item: int | None = None) -> str:
        """The prompt of ``task`` for a history (sequence tasks) or an item (item tasks)."""
        if task not in self.cfg.templates:
            raise KeyError(f"unknown task {task!r}; tasks are {list(self.cfg.templates)}")
        tpl = self.cfg.templates[task]
        if task in ITEM_TASKS:
            if item is None:
                raise ValueError(f"task {task!r} needs item=")
            return tpl.format(sid=self.sid(item), title=self.title(item))
        if history is None:
            raise ValueError(f"task {task!r} needs history=")
        need = template_fields(tpl)
        values = {"n_history": len(self._window(history))}
        if "history" in need:
            values["history"] = self.history(history)
        if "history_titles" in need:
            values["history_titles"] = self.history_titles(history)
        return tpl.format(**values)
