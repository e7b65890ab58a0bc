"""The step-aligned response layout (METHOD.md §2), in one place.

A reasoning response for a K-level SID is K steps; step k is one thinking block followed by the
SID token of level k::

    <think> z1 </think><a_12><think> z2 </think><b_7><think> z3 </think><c_201>

Exact spelling, shared by the corpus builders, SFT, decoding and RL code:

* a block is ``THINK_OPEN + " " + text + " " + THINK_CLOSE`` (one space inside each tag);
* the SID token follows ``THINK_CLOSE`` with no space, and the next ``THINK_OPEN`` follows the
  SID token with no space;
* ``text`` is non-empty, has no leading / trailing whitespace, no ``<think>`` / ``</think>`` and
  no SID-token-like text (``<x_N>``); inner whitespace (newlines too) is kept as given;
* nothing precedes the first block or follows the last SID token (eos is appended by the
  tokenisation code, not part of this text).

:func:`clean_block` turns arbitrary text (a teacher's output, an item title) into a valid block
text; :func:`render_steps` refuses anything else, so ``parse_steps(render_steps(b, c)) == (b, c)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sapo_pipeline.sid.catalog import level_letter, sid_token

#: Opening / closing markers of a thinking block (METHOD.md §2); the tokenizer makes each one
#: token (``sapo_pipeline.model.tokenizer.STRUCTURAL_TOKENS``).
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
#: What surrounds a block's text: ``BLOCK_OPEN + text + BLOCK_CLOSE``.
BLOCK_OPEN = THINK_OPEN + " "
BLOCK_CLOSE = " " + THINK_CLOSE

#: Anything that looks like a SID token, any level letter (also used to scrub item text).
SID_LIKE = re.compile(r"<\s*[a-zA-Z]\s*_\s*\d+\s*>")
_MARKER = re.compile(r"<\s*/?\s*think\s*>", re.IGNORECASE)
_TOKEN_AT = re.compile(r"<([a-z])_(0|[1-9][0-9]*)>")
_WS = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class LayoutError(ValueError):
    """A text is not a well-formed step-aligned response (or a block text is invalid)."""


def clean_block(text: str) -> str:
    """Make ``text`` a valid block text: drop think markers and SID-like tokens, tidy spaces.

    Runs of spaces / tabs collapse to one space, blank-line runs to one newline, and the result
    is stripped. May return ``""`` (the caller decides whether an empty block is a rejection).
    """
    if not isinstance(text, str):
        raise TypeError(f"clean_block expects a str, got {type(text).__name__}")
    text = _MARKER.sub(" ", text)
    text = SID_LIKE.sub(" ", text)
    text = _WS.sub(" ", text)
    text = "\n".join(line.strip() for line in _BLANK_LINES.sub("\n", text).split("\n"))
    return text.strip()


def block_problem(text: str) -> str | None:
    """Why ``text`` cannot be a block text (a short reason), or None when it can."""
    if not isinstance(text, str):
        return "not_a_string"
    if not text:
        return "empty_block"
    if text != text.strip():
        return "surrounding_whitespace"
    if _MARKER.search(text):
        return "think_tag_in_block"
    if SID_LIKE.search(text):
        return "sid_in_block"
    return None


def render_block(text: str) -> str:
    """``"<think> " + text + " </think>"``; LayoutError if ``text`` is not a valid block text."""
    problem = block_problem(text)
    if problem is not None:
        raise LayoutError(f"render_block: invalid block text ({problem}): {text[:80]!r}")
    return BLOCK_OPEN + text + BLOCK_CLOSE


def render_steps(blocks: Sequence[str], codes: Sequence[int]) -> str:
    """The step-aligned response for ``blocks`` (one per level) and the SID ``codes``."""
    blocks, codes = list(blocks), [int(c) for c in codes]
    if not codes:
        raise LayoutError("render_steps: empty SID")
    if len(blocks) != len(codes):
        raise LayoutError(
            f"render_steps: {len(blocks)} blocks for a {len(codes)}-level SID; need one per level"
        )
    out = []
    for k, (text, code) in enumerate(zip(blocks, codes)):
        problem = block_problem(text)
        if problem is not None:
            raise LayoutError(f"render_steps: block {k + 1} is invalid ({problem}): {text[:80]!r}")
        out.append(BLOCK_OPEN + text + BLOCK_CLOSE + sid_token(k, code))
    return "".join(out)


def _parse(text: str, levels: int | None) -> tuple[list[str], list[int], list[tuple[int, int]]]:
    if not isinstance(text, str):
        raise TypeError(f"parse_steps expects a str, got {type(text).__name__}")
    blocks: list[str] = []
    codes: list[int] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < len(text):
        k = len(blocks)
        start = pos
        if not text.startswith(BLOCK_OPEN, pos):
            raise LayoutError(
                f"parse_steps: expected {BLOCK_OPEN!r} opening block {k + 1} at character {pos}, "
                f"found {text[pos:pos + 16]!r}"
            )
        body_start = pos + len(BLOCK_OPEN)
        end = text.find(BLOCK_CLOSE, body_start)
        if end < 0:
            raise LayoutError(
                f"parse_steps: block {k + 1} (character {pos}) has no closing {BLOCK_CLOSE!r}"
            )
        body = text[body_start:end]
        problem = block_problem(body)
        if problem is not None:
            raise LayoutError(
                f"parse_steps: block {k + 1} (character {pos}) is invalid ({problem}): "
                f"{body[:80]!r}"
            )
        pos = end + len(BLOCK_CLOSE)
        m = _TOKEN_AT.match(text, pos)
        if m is None:
            raise LayoutError(
                f"parse_steps: block {k + 1} must be followed by a SID token like "
                f"'<{level_letter(min(k, 25))}_0>' at character {pos}, found {text[pos:pos + 16]!r}"
            )
        if m.group(1) != level_letter(k):
            raise LayoutError(
                f"parse_steps: SID tokens out of level order: step {k + 1} must use level "
                f"letter {level_letter(k)!r}, found {m.group(0)!r} at character {pos}"
            )
        blocks.append(body)
        codes.append(int(m.group(2)))
        pos = m.end()
        spans.append((start, pos))
    if not blocks:
        raise LayoutError("parse_steps: empty text has no steps")
    if levels is not None and len(blocks) != levels:
        raise LayoutError(
            f"parse_steps: wrong number of blocks: expected {levels}, found {len(blocks)}"
        )
    return blocks, codes, spans


def parse_steps(text: str, levels: int | None = None) -> tuple[list[str], list[int]]:
    """Inverse of :func:`render_steps`: ``(blocks, codes)``; LayoutError naming what is off.

    ``levels`` (when given) is the required number of steps.
    """
    blocks, codes, _ = _parse(text, levels)
    return blocks, codes


