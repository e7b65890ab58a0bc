"""Tokenizers for SID-aware language models.

Two ways to get a tokenizer that knows the semantic-ID tokens (``<a_12>``, ``<b_7>``, ...):

* :func:`train_tokenizer` trains a byte-level BPE tokenizer on our own corpus with the
  ``tokenizers`` library (no downloads) and wraps it as a ``transformers``
  ``PreTrainedTokenizerFast``, so it saves / loads / pads like any other tokenizer.
* :func:`add_sid_tokens` adds the SID tokens (and the ``<think>`` / ``</think>`` markers) to a
  pretrained tokenizer.

In both cases every SID token and every structural marker is an *added token*: it is matched
before pre-tokenisation, so it always encodes to exactly one id and never merges with its
neighbours (``"<a_12><b_7><c_201>"`` -> 3 ids). :func:`sid_token_ids` checks this and maps
each token to its id.

Layout of a trained tokenizer's vocabulary: the base special tokens (pad, eos, then bos / unk
when configured) take ids 0.., then the learned BPE vocabulary (256 byte symbols + merges) up
to ``vocab_size``, then ``<think>``, ``</think>`` and the SID tokens in the order given. So
``len(tokenizer) == vocab_size + 2 + len(sid_tokens)`` when the corpus is large enough to
learn ``vocab_size`` entries (a smaller corpus gives fewer merges; the size is logged).

Load saved tokenizers with :func:`load_tokenizer`, not ``AutoTokenizer``: transformers 5 maps
some model types (e.g. ``qwen2``) to their own tokenizer class whenever a ``config.json`` sits in
the same directory, and that class rebuilds the normaliser / pre-tokeniser -- silently changing
how our trained tokenizer splits text.

SID and marker tokens are added as non-special tokens: ``decode(..., skip_special_tokens=True)``
keeps them (they are content), while pad / eos / bos are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from sapo_pipeline.teacher.layout import THINK_CLOSE, THINK_OPEN

logger = logging.getLogger(__name__)

#: The thinking-block markers (the step-aligned layout's, teacher.layout) are single tokens.
STRUCTURAL_TOKENS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE)

_UNICODE_NORMALIZERS = {
    "none": None,
    "NFC": normalizers.NFC,
    "NFKC": normalizers.NFKC,
    "NFD": normalizers.NFD,
    "NFKD": normalizers.NFKD,
}


@dataclass
class TokenizerConfig:
    """How to train the byte-level BPE tokenizer of a from-scratch backbone."""

    vocab_size: int = field(
        default=8000,
        metadata={
            "help": "Size of the learned BPE vocabulary, base special tokens included; the "
            "structural markers and SID tokens are added on top of it."
        },
    )
    min_frequency: int = field(
        default=2, metadata={"help": "A pair must occur at least this often to be merged."}
    )
    lowercase: bool = field(
        default=False,
        metadata={"help": "Lowercase ordinary text before BPE (SID / marker tokens are exempt)."},
    )
    unicode_normalization: str = field(
        default="NFC",
        metadata={
            "help": "Unicode normalisation of ordinary text: none | NFC | NFKC | NFD | NFKD."
        },
    )
    pad_token: str = field(default="<|pad|>", metadata={"help": "Padding token (id 0)."})
    eos_token: str = field(
        default="<|endoftext|>", metadata={"help": "End-of-sequence token (id 1)."}
    )
    bos_token: str | None = field(
        default=None,
        metadata={"help": "Optional beginning-of-sequence token; None = no bos (Qwen style)."},
    )
    unk_token: str | None = field(
        default=None,
        metadata={"help": "Optional unknown token; byte-level BPE never needs one."},
    )
    model_max_length: int = field(
        default=1024, metadata={"help": "Longest sequence the model accepts (tokens)."}
    )
    padding_side: str = field(
        default="right", metadata={"help": "Side padding is applied on: right | left."}
    )

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(
                f"TokenizerConfig.vocab_size={self.vocab_size}: must be >= 300 "
                "(256 byte symbols + special tokens + some merges)"
            )
        if self.min_frequency < 1:
            raise ValueError(f"TokenizerConfig.min_frequency={self.min_frequency}: must be >= 1")
        if self.unicode_normalization not in _UNICODE_NORMALIZERS:
            raise ValueError(
                f"TokenizerConfig.unicode_normalization={self.unicode_normalization!r}: "
                f"expected one of {sorted(_UNICODE_NORMALIZERS)}"
            )
        if self.model_max_length < 1:
            raise ValueError(
                f"TokenizerConfig.model_max_length={self.model_max_length}: must be >= 1"
            )
        if self.padding_side not in ("right", "left"):
            raise ValueError(
                f"TokenizerConfig.padding_side={self.padding_side!r}: expected 'right' or 'left'"
            )
        specials = self.base_special_tokens()
        if any(not t for t in specials):
            raise ValueError(f"TokenizerConfig: special tokens must be non-empty, got {specials}")
        if len(set(specials)) != len(specials):
            raise ValueError(f"TokenizerConfig: special tokens must be distinct, got {specials}")

    def base_special_tokens(self) -> list[str]:
        """pad, eos, then bos / unk when configured: the tokens given ids 0.. by the trainer."""
        out = [self.pad_token, self.eos_token]
        out += [t for t in (self.bos_token, self.unk_token) if t is not None]
        return out


def _validate_new_tokens(tokens: Sequence[str], what: str) -> list[str]:
    out = list(tokens)
    for i, tok in enumerate(out):
        if not isinstance(tok, str) or not tok or tok != tok.strip():
            raise ValueError(
                f"{what}[{i}]={tok!r}: tokens must be non-empty strings without surrounding "
                "whitespace"
            )
    dups = sorted(t for t, n in Counter(out).items() if n > 1)
    if dups:
        raise ValueError(f"{what}: duplicate tokens {dups[:10]}")
    return out


def _strip_tokens(texts: Iterable[str], tokens: Sequence[str]) -> Iterator[str]:
    """Yield the texts with every occurrence of ``tokens`` replaced by a space.

    Added tokens are matched before BPE at encoding time, so they must not shape the learned
    merges either (otherwise ``<a_``-like fragments would waste vocabulary).
    """
    if not tokens:
        yield from texts
        return
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"train_tokenizer: text #{i} is {type(text).__name__}, expected str")
        yield pattern.sub(" ", text)


def _added(token: str) -> AddedToken:
    # normalized=False: matched on the raw text, immune to lowercase / unicode normalisation.
    return AddedToken(
        token, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False
    )


def train_tokenizer(
    texts: Iterable[str], cfg: TokenizerConfig, sid_tokens: Sequence[str]
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and add the markers and ``sid_tokens``.

    Deterministic for a fixed corpus (in a fixed order) and config. Occurrences of the marker and
    SID tokens inside ``texts`` are removed before training (see :func:`_strip_tokens`).
    Returns a ``PreTrainedTokenizerFast`` with pad / eos (/ bos / unk) set.
    """
    sid_tokens = _validate_new_tokens(sid_tokens, "sid_tokens")
    clash = sorted(set(sid_tokens) & (set(STRUCTURAL_TOKENS) | set(cfg.base_special_tokens())))
    if clash:
        raise ValueError(f"sid_tokens: {clash} collide with the structural / special tokens")

    tok = Tokenizer(models.BPE(unk_token=cfg.unk_token))
    norm: list[normalizers.Normalizer] = []
    if _UNICODE_NORMALIZERS[cfg.unicode_normalization] is not None:
        norm.append(_UNICODE_NORMALIZERS[cfg.unicode_normalization]())
    if cfg.lowercase:
        norm.append(normalizers.Lowercase())
    if norm:
        tok.normalizer = normalizers.Sequence(norm)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=cfg.base_special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_strip_tokens(texts, [*STRUCTURAL_TOKENS, *sid_tokens]), trainer)
    learned = tok.get_vocab_size()
    if learned < cfg.vocab_size:
        logger.warning(
            "train_tokenizer: corpus only supports %d of the requested %d vocabulary entries",
            learned,
            cfg.vocab_size,
        )
    tok.add_tokens([_added(t) for t in (*STRUCTURAL_TOKENS, *sid_tokens)])

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=cfg.pad_token,
        eos_token=cfg.eos_token,
        bos_token=cfg.bos_token,
        unk_token=cfg.unk_token,
        model_max_length=cfg.model_max_length,
        padding_side=cfg.padding_side,
    )
    sid_token_ids(hf, [*STRUCTURAL_TOKENS, *sid_tokens])  # fail loudly if anything is off
    logger.info(
        "train_tokenizer: %d tokens (%d learned, %d markers, %d SID tokens)",
        len(hf),
        learned,
        len(STRUCTURAL_TOKENS),
        len(sid_tokens),
    )
    return hf


def add_sid_tokens(
    tokenizer: PreTrainedTokenizerBase,
    sid_tokens: Sequence[str],
    *,
    structural_tokens: Sequence[str] = STRUCTURAL_TOKENS,
) -> int:
    """Add ``structural_tokens`` and ``sid_tokens`` to a (pretrained) tokenizer, in place.

    Tokens the tokenizer already has as single, unsplittable tokens are left alone; the others
    become added tokens that are never split. Also sets ``pad_token = eos_token`` when the
    tokenizer has no pad token. Returns how many tokens were added (the embedding matrix of the
    model must then be resized to ``len(tokenizer)``).
    """
    wanted = _validate_new_tokens([*structural_tokens, *sid_tokens], "structural+sid tokens")
    existing = tokenizer.get_vocab()
    added_already = {str(t) for t in tokenizer.added_tokens_decoder.values()}
    todo = [t for t in wanted if t not in added_already]
    # A token present in the base vocabulary is (re-)registered as an added token so that it is
    # matched whole; the tokenizer keeps its id, so it does not count as new.
    n_new = sum(1 for t in todo if t not in existing)
    before = len(tokenizer)
    if todo:
        tokenizer.add_tokens([_added(t) for t in todo])
    added = len(tokenizer) - before
    if added != n_new:  # pragma: no cover - defensive; depends on the tokenizer backend
        logger.warning("add_sid_tokens: expected %d new ids, tokenizer grew by %d", n_new, added)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("add_sid_tokens: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("add_sid_tokens: no pad token; using eos %r", tokenizer.eos_token)
    sid_token_ids(tokenizer, wanted)
    logger.info("add_sid_tokens: %d new tokens (vocabulary now %d)", added, len(tokenizer))
    return added


def sid_token_ids(tokenizer: PreTrainedTokenizerBase, sid_tokens: Sequence[str]) -> dict[str, int]:
    """Map each token to its id; ``ValueError`` listing every token that is not one single id.

    A token passes when encoding it alone (no special tokens) gives exactly one id, that id is
    not the unknown token, and it decodes back to the token.
    """
    out: dict[str, int] = {}
    bad: list[str] = []
    unk = tokenizer.unk_token_id
    for tok in sid_tokens:
        ids = tokenizer.encode(tok, add_special_tokens=False)
        if len(ids) != 1 or (unk is not None and ids[0] == unk):
            bad.append(f"{tok!r} -> {ids}")
            continue
        if tokenizer.convert_ids_to_tokens(ids[0]) != tok:
            bad.append(f"{tok!r} -> {ids} ({tokenizer.convert_ids_to_tokens(ids[0])!r})")
            continue
        out[tok] = ids[0]
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(sid_tokens)} tokens are not a single token id in this tokenizer "
            f"(add them with add_sid_tokens first): {', '.join(bad[:10])}"
            + (" ..." if len(bad) > 10 else "")
        )
    return out


_GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a saved tokenizer offline, exactly as it was saved.

    A tokenizer saved as the generic fast class (ours, from :func:`train_tokenizer`) is loaded as
    ``PreTrainedTokenizerFast``; anything else through ``AutoTokenizer``. Afterwards the live
    normaliser / pre-tokeniser / model type are compared with ``tokenizer.json``; a difference
    is logged as a warning naming the field.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"tokenizer directory absent: {root}")
    cfg_file = root / "tokenizer_config.json"
    cls_name = None
    if cfg_file.exists():
        cls_name = json.loads(cfg_file.read_text(encoding="utf-8")).get("tokenizer_class")
    if cls_name in _GENERIC_CLASSES:
        tok = PreTrainedTokenizerFast.from_pretrained(root, local_files_only=True)
    else:
        tok = AutoTokenizer.from_pretrained(root, local_files_only=True)
    _check_pipeline(tok, root / "tokenizer.json")
    return tok


def _check_pipeline(tok: PreTrainedTokenizerBase, tokenizer_json: Path) -> None:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None or not tokenizer_json.exists():
        return
    saved = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    live = json.loads(backend.to_str())
    for key in ("normalizer", "pre_tokenizer"):
        if saved.get(key) != live.get(key):
            logger.warning(
                "load_tokenizer(%s): %s differs from tokenizer.json (%s loaded %s)",
                tokenizer_json.parent,
                key,
                type(tok).__name__,
                live.get(key),
            )
    if (saved.get("model") or {}).get("type") != (live.get("model") or {}).get("type"):
        logger.warning(
            "load_tokenizer(%s): model type differs from tokenizer.json", tokenizer_json.parent
        )
