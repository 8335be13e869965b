"""Grounding in words: the logit lens of a concept vector and the filter that keeps real English words.

Lenses (u_k a row of W_dec, shape [d_model]), through the model's `LMM.unembed_vectors` (`final_norm` for "ln_final"):
    "raw"       logits = u_k · W_U            (+ b_U when use_bias)   exact for vectors read after the final norm,
                                                                      the reference code's choice
    "ln_final"  logits = ln_final(u_k) · W_U  (+ b_U when use_bias)   u_k treated as a residual-stream vector,
                                                                      right for vectors read before the final norm
`ln_final` is the model's own final norm (LayerNorm: (u − mean u)/sqrt(var u + eps)·w + b; RMSNorm: u/rms(u)·w), so
the lens follows whatever normalisation the model has; a family's final-logit soft-capping (Gemma) is applied after
W_U (monotone: the top tokens do not change). Words: the top `n_candidates` tokens by lens logit, decoded,
stripped of leading spaces and lower-cased (so "Dog", " dog" and "dog" merge into one word, ranked by its best
variant), kept if a number or if longer than 2 characters, in the English word list and not a stopword.

The English word list is the `english-words` package's data (the web2 and GCIDE lists, ~290k words, shipped inside
the wheel, read offline); the stopwords are `stopwords_en.txt` beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

Lens = Literal["raw", "ln_final"]
LENSES = ("raw", "ln_final")


@lru_cache(maxsize=4)
def english_words(lists: tuple[str, ...] = ("web2", "gcide")) -> frozenset[str]:
    """Lower-case English words from the `english-words` package (offline: its lists ship inside the wheel)."""
    try:
        from english_words import get_english_words_set
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise ImportError(
            "the word filter needs the `english-words` package (pip install english-words); it ships its word "
            "lists as data and reads them offline"
        ) from e
    return frozenset(get_english_words_set(list(lists), lower=True, alpha=True))


@lru_cache(maxsize=1)
def default_stopwords() -> frozenset[str]:
    text = resources.files("lmm_concepts.grounding").joinpath("stopwords_en.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))


def normalize_token(text: str) -> str:
    """A decoded token as a word: surrounding whitespace and sub-word markers dropped, lower case."""
    return text.strip().lstrip("Ġ▁").strip().lower()


@dataclass(frozen=True)
class WordFilter:
    """Which decoded tokens count as words (the reference code's rule, made offline)."""

    min_length: int = 3
    """keep words of at least this many characters (the reference: longer than 2)"""
    keep_numbers: bool = True
    """keep all-digit tokens whatever their length and the word list"""
    word_lists: tuple[str, ...] = ("web2", "gcide")
    """`english-words` lists a word must appear in (any of them)"""
    extra_stopwords: frozenset[str] = field(default_factory=frozenset)
    """stopwords dropped on top of the shipped list"""
    vocabulary: frozenset[str] | None = None
    """the words that count as real words instead of the English lists (e.g. a toy model's own vocabulary)"""

    def reason(self, word: str) -> str | None:
        """Why `word` (already normalised) is dropped, or None when it is kept."""
        if not word:
            return "empty"
        if word.isdigit():
            return None if self.keep_numbers else "number"
        if len(word) < self.min_length:
            return "short"
        if word in default_stopwords() or word in self.extra_stopwords:
            return "stopword"
        known = self.vocabulary if self.vocabulary is not None else english_words(self.word_lists)
        if word not in known:
            return "not a word"
        return None

    def keep(self, word: str) -> bool:
        return self.reason(word) is None


def lens_logits(
    model,
    vectors: Float[Tensor, "n d_model"],
    lens: Lens = "raw",
    use_bias: bool = False,
) -> Float[Tensor, "n d_vocab"]:
    """Logit lens of each row of `vectors` through the model's unembedding (see the module docstring)."""
    if lens not in LENSES:
        raise ValueError(f"lens must be one of {LENSES}, got {lens!r}")
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D [n, d_model], got shape {tuple(vectors.shape)}")
    if vectors.shape[1] != model.d_model:
        raise ValueError(
            f"concept vectors have d={vectors.shape[1]} but the model's d_model is {model.d_model}: the dictionary "
            "was fitted on another model or layer width; fit it on this model's representations"
        )
    W_U = model.W_U
    x = vectors.to(device=W_U.device, dtype=W_U.dtype)
    with torch.no_grad():
        if lens == "ln_final":
            x = model.final_norm(x)
        return model.unembed_vectors(x, use_bias=use_bias)


@dataclass
class GroundedWords:
    """The words of one vector: kept words in rank order, with their lens logit and token ids (all variants)."""

    words: list[str]
    scores: list[float]
    token_ids: list[list[int]]
    candidates: list[str]
    """the decoded top-`n_candidates` tokens, before filtering, in rank order"""
    dropped: dict[str, str]
    """normalised candidate -> why the filter dropped it"""


def top_words(
    logits: Tensor,
    tokenizer,
    n_words: int = 15,
    n_candidates: int = 50,
    word_filter: WordFilter | None = None,
) -> GroundedWords:
    """The first `n_words` filtered words among the top `n_candidates` tokens of `logits` [d_vocab];
    fewer when the filter leaves fewer (never padded)."""
    if n_words < 1 or n_candidates < 1:
        raise ValueError(f"n_words and n_candidates must be positive, got {n_words} and {n_candidates}")
    if tokenizer is None:
        raise ValueError("the model has no tokenizer: grounding in words needs one to decode token ids")
    word_filter = word_filter or WordFilter()
    values, ids = logits.float().topk(min(n_candidates, logits.shape[-1]))
    decoded = [tokenizer.decode([int(i)]) for i in ids]
    words: list[str] = []
    scores: list[float] = []
    token_ids: list[list[int]] = []
    dropped: dict[str, str] = {}
    for value, tid, text in zip(values.tolist(), ids.tolist(), decoded, strict=True):
        word = normalize_token(text)
        if word in words:  # a case or leading-space variant of a kept word
            token_ids[words.index(word)].append(tid)
            continue
        why = word_filter.reason(word)
        if why is not None:
            dropped.setdefault(word, why)
            continue
        if len(words) < n_words:
            words.append(word)
            scores.append(value)
            token_ids.append([tid])
    return GroundedWords(words, scores, token_ids, decoded, dropped)
