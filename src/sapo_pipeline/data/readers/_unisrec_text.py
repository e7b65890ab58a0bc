"""Best-effort split of UniSRec item text ``"title. category path. brand. "`` into fields.

UniSRec builds the text by cleaning each present meta field (title, the category list joined
with spaces, brand), collapsing its trailing dots into one "." and joining with " ". So the
text is "<title>. <categories>. <brand>. ", an empty field shows as ". . ", and any of the three
can itself contain ". " ("Mr. Heater", "24 Oz. Sprayer"). Heuristic, in order:

1. ``root`` (the category-path root shared by most items, e.g. "Industrial & Scientific", found
   by :func:`detect_root`) anchors the split: title = text before ". <root>", categories = the
   segment from the root to the next ". ", brand = the rest.
2. Else an empty category (". . ") anchors it: title before, brand after.
3. Else exactly three ". "-segments: title, categories, brand.
4. Else unsure: title = the first segment, no categories/brand, description = the whole text.

The category path comes space-joined, so its levels cannot be recovered: ``categories`` is a
one-element list holding the whole path (or empty).
"""

from __future__ import annotations

from collections import Counter

SEP = ". "


def _segments(text: str) -> list[str]:
    body = text.strip()
    body = body.removesuffix(".")
    return body.split(SEP)


def detect_root(texts: list[str], min_share: float = 0.8, max_words: int = 6) -> str | None:
    """Longest word prefix of the second segment shared by >= ``min_share`` of 3-segment texts."""
    seconds = [seg[1] for t in texts if len(seg := _segments(t)) == 3 and seg[1]]
    if not seconds:
        return None
    root = None
    for k in range(1, max_words + 1):
        prefix, n = Counter(
            " ".join(s.split(" ")[:k]) for s in seconds if len(s.split(" ")) >= k
        ).most_common(1)[0]
        if n < min_share * len(seconds):
            break
        root = prefix
    return root


def _clean(text: str) -> str | None:
    text = text.strip()
    while text.endswith("."):
        text = text[:-1].rstrip()
    return text or None


def parse_text(text: str, root: str | None) -> tuple[dict, bool]:
    """Return ({title, categories, brand, description}, sure)."""
    body = text.strip()
    if root and (i := body.find(f"{SEP}{root}")) > 0:
        title, rest = body[:i], body[i + len(SEP) :]
        j = rest.find(SEP)
        cats, brand = (rest, "") if j < 0 else (rest[:j], rest[j + len(SEP) :])
        return _fields(title, cats, brand), True
    if (i := body.find(". . ")) > 0:
        return _fields(body[:i], "", body[i + 4 :]), True
    if body.endswith(". .") and body.count(SEP) == 1:  # empty category and empty brand
        return _fields(body[: body.find(SEP)], "", ""), True
    seg = _segments(body)
    if len(seg) == 3:
        return _fields(*seg), True
    return {
        "title": _clean(seg[0]),
        "categories": [],
        "brand": None,
        "description": body or None,
    }, False


def _fields(title: str, cats: str, brand: str) -> dict:
    cat = _clean(cats)
    return {
        "title": _clean(title),
        "categories": [cat] if cat else [],
        "brand": _clean(brand),
        "description": None,
    }
