"""The token-of-interest rule: which samples are kept, and which generated token holds the word.

A sample is kept when the word occurs as a whole word (case-insensitive; plural forms when asked) in one of its
ground-truth captions *and* in its generated caption. The token of interest is the first sub-token of the word's
first occurrence among the *generated* tokens only.

Matching is done on text, then mapped back to tokens: the generated ids are decoded incrementally, which gives each
token its character span; the word's first sub-token is the token whose span holds the word's first character.
That character is a letter, so a whitespace-only piece ("▁", "Ġ") can never be chosen (the reference code once
grounded every concept to "today" through such a piece), leading-space pieces ("Ġdog") are handled, and a word
split into several sub-tokens ("Ġhot", "dog") is found by its first one. Whole-word matching means "hotdog" does
not count as "dog" (the reference code's substring test does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from lmm_concepts.errors import InputError

_VOWELS = set("aeiou")


def word_forms(word: str, plural: bool = False) -> tuple[str, ...]:
    """The surface forms that count as `word`: itself, plus its English plural forms when `plural`."""
    word = word.strip()
    if not word:
        raise InputError("the token of interest is empty: pass a word such as token='dog'")
    if re.search(r"\s", word):
        raise InputError(f"the token of interest must be one word, got {word!r}")
    if not re.search(r"\w", word):
        raise InputError(f"the token of interest must contain a letter or digit, got {word!r}")
    forms = [word]
    if plural:
        low = word.lower()
        forms += [word + "s", word + "es"]
        if low.endswith("y") and len(low) > 1 and low[-2] not in _VOWELS:
            forms.append(word[:-1] + "ies")
        if low.endswith("f"):
            forms.append(word[:-1] + "ves")
        elif low.endswith("fe"):
            forms.append(word[:-2] + "ves")
    return tuple(dict.fromkeys(forms))


def word_pattern(forms: Sequence[str]) -> re.Pattern[str]:
    """A case-insensitive regex matching any of `forms` as a whole word (no letter, digit or _ on either side)."""
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def mentions(texts: str | Sequence[str], pattern: re.Pattern[str]) -> bool:
    """True when any of `texts` holds the word as a whole word."""
    if isinstance(texts, str):
        texts = [texts]
    return any(pattern.search(t) for t in texts)


@dataclass(frozen=True)
class TokenMatch:
    """Where the word first occurs among the generated tokens."""

    index: int  #: index of the word's first sub-token among the generated tokens (0 = first generated token)
    token_ids: tuple[int, ...]  #: the generated sub-tokens covering the word, first one first
    text: str  #: the matched surface form as generated (e.g. "Dogs")


def token_spans(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Decoded text of `ids` and each token's [start, end) character span in it (special tokens: empty spans).

    Spans come from decoding growing prefixes, so they agree with how the whole caption decodes, whatever the
    tokenizer's conventions for leading spaces, byte-level pieces or sentencepiece's "▁".
    """
    spans: list[tuple[int, int]] = []
    prev = ""
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        start = _common_prefix(prev, text)
        spans.append((start, len(text)))
        prev = text
    return prev, spans


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def find_word(
    tokenizer: PreTrainedTokenizerBase,
    generated_ids: Sequence[int],
    pattern: re.Pattern[str],
    stop_ids: Sequence[int] = (),
) -> TokenMatch | None:
    """The first whole-word occurrence of the word among `generated_ids` (cut at the first of `stop_ids`), or None."""
    ids = [int(i) for i in generated_ids]
    stops = set(int(s) for s in stop_ids)
    for k, i in enumerate(ids):
        if i in stops:
            ids = ids[:k]
            break
    full = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if not pattern.search(full):  # cheap test first: most captions do not hold the word
        return None
    text, spans = token_spans(tokenizer, ids)
    m = pattern.search(text)
    if m is None:
        return None
    first = next(k for k, (s, e) in enumerate(spans) if s <= m.start() < e)
    covering = tuple(ids[k] for k, (s, e) in enumerate(spans) if s < m.end() and e > m.start() and k >= first)
    return TokenMatch(index=first, token_ids=covering, text=m.group(0))


def check_producible(tokenizer: PreTrainedTokenizerBase, forms: Sequence[str]) -> None:
    """Raise when the tokenizer cannot write the word at all (e.g. it maps to the unknown token)."""
    unk = tokenizer.unk_token_id
    for form in forms:
        for variant in (form, " " + form, form.lower(), " " + form.lower(), form.capitalize(), " " + form.capitalize()):
            ids = tokenizer.encode(variant, add_special_tokens=False)
            if not ids or (unk is not None and unk in ids):
                continue
            decoded = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if decoded.strip() == variant.strip():
                return
    raise InputError(
        f"the tokenizer cannot produce {forms[0]!r} (it encodes to the unknown token or decodes to something else), "
        "so no generated caption can contain it: choose a word in the model's vocabulary"
    )
