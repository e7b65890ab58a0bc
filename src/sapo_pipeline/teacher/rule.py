"""The offline, deterministic teacher: templated text from the catalog and the SID hierarchy.

Block 1 reasons from the history to the target's broad group (what its level-1 prefix stands
for), the middle blocks to the sub-type of each finer prefix, the last block to the item itself.
Phrasing varies over several templates, chosen by a RNG seeded with ``(seed, kind, key)`` (the
sample id for reasoning, the item id for descriptions), so a run is reproducible. Every text goes
through :func:`~sapo_pipeline.teacher.layout.clean_block`, which removes anything SID-like coming
from item text, so a block can never spell a SID token.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from sapo_pipeline.teacher.base import ItemInfo, Outcome, ReasoningRequest, Teacher
from sapo_pipeline.teacher.config import RuleTeacherConfig
from sapo_pipeline.teacher.hierarchy import HierarchyConfig, PrefixSummary, title_words
from sapo_pipeline.teacher.layout import block_problem, clean_block
from sapo_pipeline.teacher.prompts import cut_text

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TRAILING_NUMBER = re.compile(r"[ ,;:-]+[\d.,/x]+$")
_WORD_CFG = HierarchyConfig()

_FIRST_SAME = (
    ("{share} in {l1}, the latest being {recent}. The user keeps shopping in {l1}, so the "
     "next item should come from that group."),
    ("Looking at the history, {l1} comes up {same_times} out of {n}. That steady interest "
     "points to another {l1} product next."),
    ("The user's recent buys ({examples}) lean toward {l1}. Continuing that pattern, the next "
     "purchase is most likely in the {l1} group."),
)
_FIRST_SHIFT = (
    ("The history is mostly {groups}, with {recent} most recently. The next purchase likely "
     "branches out into {l1}, a group of items about {words}."),
    ("None of the past items are in {l1}; they center on {groups}. A complementary purchase "
     "in {l1} ({words}) is the most plausible next step."),
    ("The user has focused on {groups}. Their next need appears to move to {l1}, where items "
     "typically involve {words}."),
)
_FIRST_EMPTY = ("With no history to go on, the best guess for the broad group is {l1}.",)
_MID_SAME = (
    ("Within {parent}, the history has {same_items} in {label}. The next item is likely "
     "another {label} product, typically described by {words}."),
    ("Inside {parent}, the user's history matches {label} {same_times}, so narrow down to "
     "{label}{brands}."),
)
_MID_NEW = (
    ("Within {parent}, the best fit is {label}: its items mention {words}{brands}, which suits "
     "this user's needs."),
    "Narrowing {parent} down, {label} fits best: common features there are {words}{brands}.",
)
_LAST = (
    "The exact item is {title}{by_brand}. {why}",
    "Among {label} items, the best match is {title}{by_brand}. {why}",
    "This points to {title}{by_brand}. {why}",
)
_WHY_BRAND = "The user has bought {brand} before, which makes this item a natural pick."
_WHY_SHARED = "Its features ({words}) match what the user has been buying."
_WHY_OWN = "It stands out for being {words}."
_WHY_NONE = "It is the item in this group that fits the history best."
_DESCRIBE_KIND = (
    "{title} is {kind}{by_brand}. {details}",
    "{title}{by_brand}: {kind}. {details}",
)
_DESCRIBE_PLAIN = (
    "{title}{by_brand}. {details}",
    "About {title}{by_brand}: {details}",
)
_NARRATE_GROUPS = (
    "This user mostly buys {main} ({k} of {n}){focus}.",
    "Across {purchases}, the main interest is {main} ({k_items}){focus}.",
)
_NARRATE_WORDS = (
    "This user's purchases center on {words}.",
    "Across {purchases}, recurring themes are {words}.",
)


def short_title(title: str, max_chars: int) -> str:
    """:func:`cut_text`, also dropping a number a cut left dangling ("..., 36" of "36 Count")."""
    cut = cut_text(title, max_chars)
    if len(cut) < len(clean_block(title).replace("\n", " ")):
        cut = _TRAILING_NUMBER.sub("", cut).rstrip(" ,;:-") or cut
    return cut


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def _share(same: int, n: int) -> str:
    if n == 1:
        return "The only past purchase is"
    if same == n:
        return f"All {n} past purchases are"
    return f"{same} of the {n} past purchases are"


def _items(n: int) -> str:
    return "one item" if n == 1 else f"{n} items"


def _by_brand(brand: str, title: str) -> str:
    """' by Brand', or '' when there is no brand or the title already names it."""
    if not brand or brand.lower() in title.lower():
        return ""
    return f" by {brand}"


def _join(words: Sequence[str]) -> str:
    words = [w for w in words if w]
    if len(words) <= 1:
        return words[0] if words else ""
    return ", ".join(words[:-1]) + " and " + words[-1]


def _first_sentences(text: str, max_chars: int) -> str:
    text = clean_block(text).replace("\n", " ")
    out = ""
    for sentence in _SENTENCE_END.split(text):
        if len(out) + len(sentence) + 1 > max_chars:
            break
        out = f"{out} {sentence}".strip()
    if not out and text:
        out = short_title(text, max_chars)
    return out


class RuleTeacher(Teacher):
    """Templated teacher: no model, no network, deterministic for a seed."""

    backend = "rule"

    def __init__(self, cfg: RuleTeacherConfig | None = None, seed: int = 0):
        super().__init__(model="rule-v1")
        self.cfg = cfg or RuleTeacherConfig()
        self.seed = int(seed)

    def _rng(self, kind: str, key: object) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{key}")

    def _title(self, item: ItemInfo) -> str:
        return short_title(item.title, self.cfg.max_title_chars) or f"item {item.item_id}"

    # -- descriptions ----------------------------------------------------------------------
    def _describe(self, item: ItemInfo) -> str:
        rng = self._rng("describe", item.item_id)
        title = self._title(item)
        details = _first_sentences(item.description, self.cfg.max_description_chars)
        head = title.lower()[:30]
        if head and details.lower().startswith(head):  # the source repeats the title: drop it
            details = " ".join(_SENTENCE_END.split(details)[1:])
        if not details:
            words = title_words(item.title, _WORD_CFG, item.brand)[:3]
            details = f"Key features: {_join(words)}." if words else ""
        broad, fine = clean_block(item.broad_category), clean_block(item.fine_category)
        kind = f"a {fine} product" + (f" in {broad}" if broad and broad != fine else "")
        fields = {"title": title, "details": details, "kind": kind,
                  "by_brand": _by_brand(clean_block(item.brand), title)}
        return clean_block(rng.choice(_DESCRIBE_KIND if fine else _DESCRIBE_PLAIN)
                           .format(**fields))

    def describe_items(self, items: Sequence[ItemInfo]) -> list[Outcome]:
        return self._count("describe_item", [_outcome(self._describe(i)) for i in items])

    # -- user narratives -------------------------------------------------------------------
    def _narrate(self, history: Sequence[ItemInfo]) -> str:
        if not history:
            return "This user has no purchases yet."
        rng = self._rng("narrate", ",".join(str(i.item_id) for i in history))
        n = len(history)
        purchases = "one purchase" if n == 1 else f"{n} purchases"
        groups = [clean_block(i.broad_category) for i in history]
        counts = Counter(g for g in groups if g)
        last = history[-1]
        if counts:
            top, k = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            fine = Counter(clean_block(i.fine_category) for i, g in zip(history, groups)
                           if g == top and clean_block(i.fine_category) not in ("", top))
            focus = (f", especially {min(fine.items(), key=lambda kv: (-kv[1], kv[0]))[0]}"
                     if fine else "")
            head = rng.choice(_NARRATE_GROUPS).format(
                main=f"{top} items", k=k, n=n, k_items=_items(k), focus=focus,
                purchases=purchases)
            moved = groups[-1] and groups[-1] != top
        else:
            words = Counter(w for i in history for w in title_words(i.title, _WORD_CFG, i.brand))
            top_words = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
            head = rng.choice(_NARRATE_WORDS).format(
                words=_join(top_words) or "a mix of products", purchases=purchases)
            moved = False
        brands = Counter(clean_block(i.brand) for i in history if clean_block(i.brand))
        repeat = [(b, c) for b, c in brands.most_common() if c >= 2]
        if repeat:
            brand_text = f"They return to {repeat[0][0]} ({repeat[0][1]} purchases)."
        else:
            brand_text = "They try different brands." if len(brands) > 1 else ""
        recent = (f"Lately they have moved toward {groups[-1]}." if moved
                  else f"Their latest purchase is {self._title(last)}.")
        return clean_block(f"{head} {brand_text} {recent}")

    def narrate_users(self, histories: Sequence[Sequence[ItemInfo]]) -> list[Outcome]:
        return self._count("narrate_user", [_outcome(self._narrate(h)) for h in histories])

    # -- step-aligned reasoning ------------------------------------------------------------
    def _same_prefix(self, req: ReasoningRequest, level: int) -> int:
        """History items sharing the target's prefix of length ``level``."""
        if req.history_codes:
            return sum(tuple(c[:level]) == req.codes[:level] for c in req.history_codes)
        key = req.target.broad_category if level == 1 else req.target.fine_category
        attr = "broad_category" if level == 1 else "fine_category"
        return sum(bool(key) and getattr(i, attr) == key for i in req.history)

    def _history_groups(self, req: ReasoningRequest) -> str:
        counts = Counter(clean_block(i.broad_category) for i in req.history if i.broad_category)
        top = [g for g, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]
        if top:
            return _join(top)
        words = Counter(w for i in req.history for w in title_words(i.title, _WORD_CFG, i.brand))
        return _join([w for w, _ in words.most_common(2)]) or "a mix of products"

    def _labels(self, req: ReasoningRequest) -> list[str]:
        """A distinct name per level (level 1 .. K-1), falling back to the target's categories."""
        labels: list[str] = []
        fallback = [req.target.broad_category, req.target.fine_category]
        for k, summary in enumerate(req.hierarchy):
            label = clean_block(summary.label(avoid=labels))
            if not label and k < len(fallback):
                label = clean_block(fallback[k])
            labels.append(label or ("this group" if k == 0 else f"this sub-group {k + 1}"))
        return labels

    def _first_block(self, req: ReasoningRequest, rng: random.Random, l1: str,
                     summary: PrefixSummary) -> str:
        n = len(req.history)
        if n == 0:
            return rng.choice(_FIRST_EMPTY).format(l1=l1)
        same = self._same_prefix(req, 1)
        recent_items = req.history[-self.cfg.max_history_mentions:]
        fields = {
            "n": n, "share": _share(same, n), "same_times": _times(same), "l1": l1,
            "recent": self._title(req.history[-1]),
            "examples": "; ".join(self._title(i) for i in reversed(recent_items)),
            "groups": self._history_groups(req),
            "words": _join(summary.top_words(3)) or "related needs",
        }
        return rng.choice(_FIRST_SAME if same else _FIRST_SHIFT).format(**fields)

    def _middle_block(self, req: ReasoningRequest, rng: random.Random, level: int,
                      parent: str, label: str, summary: PrefixSummary) -> str:
        same = self._same_prefix(req, level)
        brands = summary.top_brands(2)
        fields = {
            "parent": parent, "label": label, "same_times": _times(same),
            "same_items": _items(same),
            "words": _join(summary.top_words(3)) or "similar features",
            "brands": f", with brands such as {_join(brands)}" if brands else "",
        }
        return rng.choice(_MID_SAME if same else _MID_NEW).format(**fields)

    def _last_block(self, req: ReasoningRequest, rng: random.Random, label: str) -> str:
        target = req.target
        brand = clean_block(target.brand)
        history_brands = {clean_block(i.brand).lower() for i in req.history if i.brand}
        own = title_words(target.title, _WORD_CFG, target.brand)
        seen = {w for i in req.history for w in title_words(i.title, _WORD_CFG, i.brand)}
        shared = [w for w in own if w in seen][:3]
        if brand and brand.lower() in history_brands:
            why = _WHY_BRAND.format(brand=brand)
        elif shared:
            why = _WHY_SHARED.format(words=_join(shared))
        elif own:
            why = _WHY_OWN.format(words=_join(own[:3]))
        else:
            why = _WHY_NONE
        title = self._title(target)
        return rng.choice(_LAST).format(title=title, label=label, why=why,
                                        by_brand=_by_brand(brand, title))

    def _concise(self, req: ReasoningRequest, labels: list[str]) -> list[str]:
        """One clause per step: whether the history stays in each group, then the item."""
        blocks = []
        for level in range(1, len(req.codes)):
            stays = bool(req.history) and self._same_prefix(req, level) > 0
            kind = "Group" if level == 1 else "Type"
            blocks.append(f"{kind}: {labels[level - 1]} ({'as before' if stays else 'new'}).")
        blocks.append(f"Item: {self._title(req.target)}.")
        return [clean_block(b) for b in blocks]

    def _evidence(self, req: ReasoningRequest) -> list[str]:
        """One clause per step, a function of the history and the SID prefix chosen before it
        (never of the answer): block 1 names the latest item's group and how many history items
        are in it; block k > 1 counts the history items under the chosen prefix of length k - 1
        and names the latest of them. Teacher-forced on the target's prefix in training, it is
        computed on each beam's own prefix in decoding, so a greedy block never picks the group."""
        if req.history and not (req.history_codes and req.history_hierarchy):
            raise ValueError(f"ReasoningRequest {req.key}: the evidence style needs the history "
                             f"items' SIDs and prefix summaries")
        n = len(req.history)
        if n:
            last = req.history_codes[-1]
            same = sum(c[:1] == last[:1] for c in req.history_codes)
            group = clean_block(req.history_hierarchy[-1][0].label()) or "one group"
            blocks = [f"Latest group: {group} ({same} of {n})."]
        else:
            blocks = ["Latest group: none."]
        for level in range(2, len(req.codes) + 1):
            prefix = req.codes[:level - 1]
            inside = [i for i, c in enumerate(req.history_codes) if tuple(c[:level - 1]) == prefix]
            if inside:
                latest = self._title(req.history[inside[-1]])
                blocks.append(f"Here: {len(inside)} of {n}, latest {latest}.")
            else:
                blocks.append(f"Here: 0 of {n}.")
        return [clean_block(b) for b in blocks]

    def _reason(self, req: ReasoningRequest) -> list[str]:
        if self.cfg.style == "evidence":
            return self._evidence(req)
        rng = self._rng("reason", req.key)
        labels = self._labels(req)
        if self.cfg.style == "concise":
            return self._concise(req, labels)
        blocks: list[str] = []
        for level in range(1, len(req.codes)):
            summary = req.hierarchy[level - 1]
            if level == 1:
                blocks.append(self._first_block(req, rng, labels[0], summary))
            else:
                blocks.append(self._middle_block(req, rng, level, labels[level - 2],
                                                 labels[level - 1], summary))
        label = labels[-1] if labels else "all"
        blocks.append(self._last_block(req, rng, label))
        return [clean_block(b) for b in blocks]

    def reason_steps_batch(self, requests: Sequence[ReasoningRequest]) -> list[Outcome]:
        out = []
        for req in requests:
            blocks = self._reason(req)
            problems = [block_problem(b) for b in blocks]
            bad = next((p for p in problems if p), None)
            out.append(Outcome(error=bad) if bad else Outcome(value=blocks))
        return self._count("reason_steps", out)


def _outcome(text: str) -> Outcome:
    problem = block_problem(text)
    return Outcome(error=problem) if problem else Outcome(value=text)
