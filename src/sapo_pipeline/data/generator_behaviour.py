"""Synthetic users: sparse, drifting preferences and a sticky Markov chain over sub-types.

Each user prefers 1..``preferred_categories`` top categories (drawn by category popularity),
and two sub-types inside each (drawn by sub-type popularity). Purchase t+1 given purchase t:

* with ``stay_prob`` it stays in the current sub-type;
* with ``complement_prob`` it moves along the catalog's fixed complementary map
  (the first complement with probability 0.7, else the second);
* otherwise it jumps to one of the user's preferred categories / sub-types.

Before each step, with ``drift_prob`` one preferred-category slot is replaced by a fresh draw,
so preferences drift over time. The item inside the sub-type is Zipf-like by popularity; a
user never buys the same item twice when the sub-type has items left (repeats are re-drawn).
Timestamps increase strictly per user. Everything is vectorised over users: the only Python
loop is over the step index (at most ``max_reviews_per_user`` iterations).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from sapo_pipeline.data.config import GeneratorConfig
from sapo_pipeline.data.generator_catalog import Catalog

_MS_PER_DAY = 86_400_000
_REDRAWS = 24  # rounds of re-drawing repeated (user, item) pairs (Zipf first, then uniform)
_ZIPF_REDRAWS = 4


@dataclass
class Interactions:
    """One row per clean review, user-major and time-ordered within a user."""

    user: np.ndarray  # (n,) user index
    item: np.ndarray  # (n,) item index into the catalog
    timestamp_ms: np.ndarray  # (n,) int64, strictly increasing within a user
    rating: np.ndarray  # (n,) float64 in {1..5}
    helpful_vote: np.ndarray  # (n,) int64
    verified: np.ndarray  # (n,) bool
    variant: np.ndarray  # (n,) index into catalog.variants[item]
    text_choice: np.ndarray  # (n, 4) title / text template, adjective and use indices
    repeat_pairs: int  # (user, item) repeats left after re-drawing (0 unless a sub-type runs out)


def _ms(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000


def _top2(rng: np.random.Generator, log_w: np.ndarray) -> np.ndarray:
    """Two distinct indices along the last axis, drawn without replacement (Gumbel top-k)."""
    g = log_w - np.log(-np.log(rng.random(log_w.shape)))
    top = np.argsort(-g, axis=-1)[..., :2]
    if log_w.shape[-1] == 1:
        top = np.concatenate([top, top], axis=-1)
    return top


def simulate(cfg: GeneratorConfig, cat: Catalog, rng: np.random.Generator) -> Interactions:
    """Draw every user's purchase sequence, timestamps, ratings and review-text choices."""
    n_users, n_cat, per = cfg.total_users, cfg.n_top_categories, cfg.subtypes_per_category
    sub_pop = cat.subtype_popularity.reshape(n_cat, per)  # sub-types are category-major
    cat_logw = np.log(sub_pop.sum(axis=1))
    sub_logw = np.log(sub_pop / sub_pop.sum(axis=1, keepdims=True))

    # Review counts: min + geometric extra with the configured mean, capped.
    p = 1.0 / (1.0 + cfg.mean_reviews_per_user - cfg.min_reviews_per_user)
    lengths = np.minimum(cfg.min_reviews_per_user + rng.geometric(p, n_users) - 1,
                         cfg.max_reviews_per_user)
    steps = int(lengths.max())

    # Sparse preferences: k categories per user, two sub-types (global ids) per category.
    k_max = min(cfg.preferred_categories, n_cat)
    n_pref = rng.integers(1, k_max + 1, n_users)
    g = cat_logw - np.log(-np.log(rng.random((n_users, n_cat))))
    pref_cat = np.argsort(-g, axis=1)[:, :k_max]
    pref_sub = pref_cat[..., None] * per + _top2(rng, sub_logw[pref_cat])  # (U, k, 2)

    rows = np.arange(n_users)

    def preferred(r: np.random.Generator) -> np.ndarray:
        slot = np.floor(r.random(n_users) * n_pref).astype(np.int64)
        which = (r.random(n_users) >= 0.65).astype(np.int64)
        return pref_sub[rows, slot, which]

    seq = np.empty((n_users, steps), dtype=np.int64)
    state = preferred(rng)
    seq[:, 0] = state
    for t in range(1, steps):
        drift = np.flatnonzero(rng.random(n_users) < cfg.drift_prob)
        if len(drift):
            gd = cat_logw - np.log(-np.log(rng.random((len(drift), n_cat))))
            new_cat = np.argmax(gd, axis=1)
            slot = np.floor(rng.random(len(drift)) * n_pref[drift]).astype(np.int64)
            pref_sub[drift, slot] = new_cat[:, None] * per + _top2(rng, sub_logw[new_cat])

        r = rng.random(n_users)
        comp = cat.complements[state, (rng.random(n_users) >= 0.7).astype(np.int64)]
        jump = preferred(rng)
        state = np.where(r < cfg.stay_prob, state,
                         np.where(r < cfg.stay_prob + cfg.complement_prob, comp, jump))
        seq[:, t] = state

    mask = np.arange(steps)[None, :] < lengths[:, None]
    sub = seq[mask]  # user-major, in step order
    user = np.repeat(rows, lengths)
    n = len(sub)
    item = np.searchsorted(cat.item_cdf, sub + rng.random(n), side="right")
    item, repeats = _redraw_repeats(rng, cat, user, sub, item)

    # Timestamps: a per-user active window inside [start, end), sorted uniform offsets.
    t0, t1 = _ms(cfg.start_date), _ms(cfg.end_date)
    begin = t0 + np.floor(rng.random(n_users) * 0.95 * (t1 - t0)).astype(np.int64)
    span = np.minimum(np.exp(rng.normal(np.log(150.0), 0.8, n_users)) * _MS_PER_DAY,
                      (t1 - 1 - begin)).astype(np.int64)
    offs = np.sort(rng.random(n) + user)  # sorted within each user, users stay in order
    ts = begin[user] + np.floor((offs - user) * span[user]).astype(np.int64)
    ts = _strictly_increasing(ts, user)

    # Ratings: a latent score cut at thresholds (skewed to 5 like real reviews), plus a few
    # uniformly bad experiences.
    z = cat.item_quality[item] + rng.normal(0.0, 0.3, n_users)[user] + rng.normal(0, 0.8, n)
    rating = 1.0 + np.searchsorted(np.array([2.4, 2.9, 3.5, 4.2]), z).astype(np.float64)
    bad = rng.random(n) < 0.05
    rating[bad] = 1.0 + np.floor(rng.random(int(bad.sum())) * 2)
    n_var = np.array([len(v) for v in cat.variants])[item]
    return Interactions(
        user=user, item=item, timestamp_ms=ts, rating=rating,
        helpful_vote=(rng.geometric(0.6, n) - 1).astype(np.int64),
        verified=rng.random(n) < 0.88,
        variant=np.floor(rng.random(n) * n_var).astype(np.int64),
        text_choice=text_templates(rating, rng.integers(0, 1 << 16, size=(n, 4))),
        repeat_pairs=repeats,
    )


def _redraw_repeats(rng, cat: Catalog, user, sub, item):
    """Re-draw items a user already bought: Zipf first, then uniform within the sub-type."""
    n_items = cat.n_items
    start = cat.subtype_item_start
    for round_ in range(_REDRAWS + 1):
        key = user * n_items + item
        order = np.argsort(key, kind="stable")
        dup_sorted = np.zeros(len(key), dtype=bool)
        dup_sorted[1:] = key[order][1:] == key[order][:-1]
        dup = order[dup_sorted]  # every occurrence after the first (in sequence order)
        if len(dup) == 0:
            return item, 0
        if round_ == _REDRAWS:
            return _fill_repeats(cat, user, sub, item, dup)
        s = sub[dup]
        if round_ < _ZIPF_REDRAWS:
            new = np.searchsorted(cat.item_cdf, s + rng.random(len(dup)), side="right")
        else:
            size = start[s + 1] - start[s]
            new = start[s] + np.floor(rng.random(len(dup)) * size).astype(np.int64)
        item = item.copy()
        item[dup] = new
    raise AssertionError("unreachable")  # pragma: no cover


def _fill_repeats(cat: Catalog, user, sub, item, dup):
    """Last resort for the few repeats left: the user's first unbought item of the sub-type,
    else of its top category's other sub-types, else of its complements; a repeat stays (and
    is counted) only if all of those are bought."""
    item = item.copy()
    start = cat.subtype_item_start
    same_cat = [np.flatnonzero(cat.subtype_category == c).tolist() for c in cat.subtype_category]
    left = 0
    for pos in dup.tolist():
        u = user[pos]
        lo = np.searchsorted(user, u)
        hi = np.searchsorted(user, u, side="right")
        bought = set(item[lo:hi].tolist())
        for s in (sub[pos], *same_cat[sub[pos]], *cat.complements[sub[pos]].tolist()):
            free = [i for i in range(start[s], start[s + 1]) if i not in bought]
            if free:
                item[pos] = free[0]
                break
        else:
            left += 1
    return item, left


def _strictly_increasing(ts: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Bump ties by 1 ms so timestamps strictly increase within each user."""
    ts = ts.copy()
    while True:
        clash = np.flatnonzero((ts[1:] <= ts[:-1]) & (user[1:] == user[:-1])) + 1
        if len(clash) == 0:
            return ts
        ts[clash] = ts[clash - 1] + 1


# ---- review titles and texts (sentiment from the rating) ---------------------------------------

_TITLES = {
    "pos": ["Love it", "Great {head}", "Five Stars", "Works perfectly", "Excellent {desc} {head}",
            "Highly recommend", "Exactly what I needed"],
    "mid": ["It's okay", "Decent {head}", "Three Stars", "Does the job", "Average {desc} {head}"],
    "neg": ["Disappointed", "Poor quality {head}", "One Star", "Would not buy again",
            "Broke quickly"],
}
_TEXTS = {
    "pos": [
        "This {head} is exactly what I needed for {use}. The {desc} design is {adj}.",
        "Great {brand} {head}. Very {adj} and the {desc} part works well.",
        "Bought this for {use} and it works great. {Adj} {head}, would buy again.",
        "Second time buying this {head}. {Adj}, {desc}, and good value.",
    ],
    "mid": [
        "The {head} is fine for {use}, but the {desc} part could be better.",
        "Decent {brand} product. Not as {adj} as I expected.",
        "It works. The {head} is {adj} enough but nothing special.",
    ],
    "neg": [
        "The {head} stopped working after a week. The {desc} part is {nadj}.",
        "Not happy with this {brand} {head}; {nadj} for {use}.",
        "Returned it. The {desc} {head} felt {nadj} out of the box.",
    ],
}
_ADJ = ["sturdy", "reliable", "comfortable", "well made", "easy to use", "solid", "handy"]
_NADJ = ["flimsy", "cheap", "unreliable", "awkward", "poorly made", "too small"]
_USES = ["work", "home", "school", "my shop", "the lab", "daily use", "a project"]


_TITLE_TPL = [t for mood in ("neg", "mid", "pos") for t in _TITLES[mood]]
_TEXT_TPL = [t for mood in ("neg", "mid", "pos") for t in _TEXTS[mood]]


def _pick(table: dict[str, list[str]], mood: np.ndarray, draw: np.ndarray) -> np.ndarray:
    sizes = np.array([len(table[m]) for m in ("neg", "mid", "pos")])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return offsets[mood] + draw % sizes[mood]


def text_templates(rating: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Per review: (title template, text template, adjective, use) indices; mood from rating."""
    mood = np.where(rating >= 4, 2, np.where(rating >= 3, 1, 0))
    return np.stack([_pick(_TITLES, mood, choice[:, 0]), _pick(_TEXTS, mood, choice[:, 1]),
                     choice[:, 2] % len(_ADJ), choice[:, 3] % len(_USES)], axis=1)


def review_text(head: str, desc: str, brand: str, tpl) -> tuple[str, str]:
    """Review (title, text) from an item's lower-cased head noun, descriptor and brand, and a
    row of :func:`text_templates`."""
    adj = _ADJ[tpl[2]]
    words = {"head": head, "desc": desc, "brand": brand, "adj": adj, "Adj": adj.capitalize(),
             "nadj": _NADJ[tpl[2] % len(_NADJ)], "use": _USES[tpl[3]]}
    return _TITLE_TPL[tpl[0]].format_map(words), _TEXT_TPL[tpl[1]].format_map(words)
