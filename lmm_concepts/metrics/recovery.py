"""Ground-truth concept recovery: do the learned concepts find attributes we *know* are in the data?

For every attribute value present among the kept samples (e.g. ``colour=red``), the concept whose activation
best separates the samples having that value from those lacking it is chosen on the **train** split (by
AUROC), and that concept's AUROC is then scored on the **test** split, so selection and scoring never see the
same samples. Learners with signed codes (PCA) may use either sign of a concept; the sign is chosen on train
too. We also record whether the chosen concept's grounded words contain the value's word.

Notation: V [n, K] concept activations (codes) of n samples; one attribute record per sample. AUROC is the
Mann–Whitney probability that a random positive scores above a random negative, ties counted one half.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

AttributeRecord = Mapping[str, Any]
ValueWord = Callable[[str, str], "str | None"]


def attribute_values(record: AttributeRecord) -> set[tuple[str, str]]:
    """The (attribute, value) pairs one sample carries, flattened from a nested attribute record.

    Scalars under a key give ``(key, str(value))``; a list of objects (dicts) gives the pairs of every object
    (an image with a red circle and a blue square carries both ``colour=red`` and ``colour=blue``); a list of
    scalars gives one pair per element.
    """
    pairs: set[tuple[str, str]] = set()
    for key, value in record.items():
        _collect(str(key), value, pairs)
    return pairs


def _collect(key: str, value: Any, pairs: set[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _collect(str(k), v, pairs)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(key, v, pairs)
    elif value is not None:
        pairs.add((key, str(value).lower() if isinstance(value, str) else str(value)))


def value_labels(
    train_attributes: Sequence[AttributeRecord], test_attributes: Sequence[AttributeRecord]
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(attribute, value, train labels, test labels) for every value present among the samples, sorted: the
    labels are boolean [n_train] / [n_test], True where the sample carries the value (`attribute_values`)."""
    train_pairs = [attribute_values(r) for r in train_attributes]
    test_pairs = [attribute_values(r) for r in test_attributes]
    for attr, value in sorted(set().union(*train_pairs, *test_pairs)):
        y_train = np.array([(attr, value) in p for p in train_pairs], dtype=bool)
        y_test = np.array([(attr, value) in p for p in test_pairs], dtype=bool)
        yield attr, value, y_train, y_test


def auroc_columns(scores: Float[np.ndarray, "n k"], positive: np.ndarray) -> Float[np.ndarray, " k"]:
    """AUROC of every column of ``scores`` for the boolean labels ``positive`` [n] (ties count one half).

    Computed from mid-ranks (Mann–Whitney U), vectorised over columns. Needs at least one positive and one
    negative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} positives and {n_neg} negatives")
    ranks = _midranks(scores)
    u = ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each column, tied values sharing the mean of their ranks."""
    n, k = x.shape
    order = np.argsort(x, axis=0, kind="mergesort")
    sorted_x = np.take_along_axis(x, order, axis=0)
    ranks = np.empty_like(x)
    cols = np.arange(k)
    for j in cols:  # K columns, each O(n log n); K is small (tens to hundreds)
        s = sorted_x[:, j]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], n]
        mean_rank = (starts + ends + 1) / 2.0  # ranks are 1-based: mean of starts+1 .. ends
        ranks[order[:, j], j] = np.repeat(mean_rank, ends - starts)
    return ranks


@dataclass
class ValueRecovery:
    """How well one attribute value is recovered by its best concept."""

    attribute: str
    value: str
    #: index of the concept chosen on train, or None when the value can't be scored (see `note`)
    concept: int | None
    #: +1, or -1 when a signed method's concept separates the value by low activation
    sign: int
    train_auroc: float | None
    #: held-out AUROC of the chosen concept (None when the test split lacks positives or negatives)
    test_auroc: float | None
    n_train_positive: int
    n_test_positive: int
    #: the word we look for among the concept's grounded words
    word: str | None = None
    #: whether the chosen concept's grounded words contain `word` (None when no words were given)
    word_in_grounding: bool | None = None
    note: str = ""


@dataclass
class RecoveryResult:
    """Per-value recovery and its means, for one method."""

    values: list[ValueRecovery] = field(default_factory=list)
    #: mean held-out AUROC over the values that could be scored
    mean_test_auroc: float | None = None
    #: fraction of scored values whose chosen concept's words contain the value's word
    word_hit_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecoveryResult:
        return cls(
            values=[ValueRecovery(**v) for v in d["values"]],
            mean_test_auroc=d.get("mean_test_auroc"),
            word_hit_rate=d.get("word_hit_rate"),
        )

    def by_attribute(self) -> dict[str, float]:
        """Mean held-out AUROC per attribute (colour, size, ...)."""
        groups: dict[str, list[float]] = {}
        for v in self.values:
            if v.test_auroc is not None:
                groups.setdefault(v.attribute, []).append(v.test_auroc)
        return {a: float(np.mean(s)) for a, s in sorted(groups.items())}


def concept_recovery(
    train_codes: Float[Tensor, "n_train n_concepts"] | np.ndarray,
    train_attributes: Sequence[AttributeRecord],
    test_codes: Float[Tensor, "n_test n_concepts"] | np.ndarray,
    test_attributes: Sequence[AttributeRecord],
    *,
    signed: bool = False,
    concept_words: Sequence[Iterable[str]] | None = None,
    value_word: ValueWord | Mapping[tuple[str, str], str] | None = None,
    min_positive: int = 1,
) -> RecoveryResult:
    """Score every attribute value present among the samples (see the module docstring).

    Args:
        train_codes, test_codes: concept activations V of the train and test samples.
        train_attributes, test_attributes: one attribute record per sample (nested dicts/lists allowed, see
            `attribute_values`).
        signed: allow a concept's negative direction (for learners with signed codes, e.g. PCA).
        concept_words: grounded words of each concept, to check whether the chosen concept names the value.
        value_word: the word naming a value (callable or mapping on (attribute, value)); default the value
            itself. Returning None skips the word check for that value (e.g. numeric counts).
        min_positive: values with fewer train positives than this are reported but not scored.
    """
    V_train = _as_numpy(train_codes)
    V_test = _as_numpy(test_codes)
    if V_train.shape[0] != len(train_attributes) or V_test.shape[0] != len(test_attributes):
        raise ValueError(
            f"codes and attribute records disagree: train {V_train.shape[0]} vs {len(train_attributes)}, "
            f"test {V_test.shape[0]} vs {len(test_attributes)}; pass one record per row of the codes"
        )
    if V_train.shape[1] != V_test.shape[1]:
        raise ValueError(f"train codes have K={V_train.shape[1]} concepts but test codes K={V_test.shape[1]}")
    if concept_words is not None:
        concept_words = [{w.strip().lower() for w in ws} for ws in concept_words]
        if len(concept_words) != V_train.shape[1]:
            raise ValueError(f"concept_words has {len(concept_words)} entries for K={V_train.shape[1]} concepts")
    word_of = _word_lookup(value_word)

    out: list[ValueRecovery] = []
    for attr, value, y_train, y_test in value_labels(train_attributes, test_attributes):
        n_tr, n_te = int(y_train.sum()), int(y_test.sum())
        word = word_of(attr, value)
        rec = ValueRecovery(attr, value, None, 1, None, None, n_tr, n_te, word)
        out.append(rec)
        if n_tr == 0 or n_tr < min_positive:
            rec.note = f"{n_tr} train positives (need at least {max(min_positive, 1)})"
            continue
        if n_tr == len(y_train):
            rec.note = "every train sample has this value: nothing to separate"
            continue
        auc = auroc_columns(V_train, y_train)
        if signed:
            flip = 1.0 - auc
            candidates = np.concatenate([auc, flip])
            best = int(np.argmax(candidates))
            rec.concept, rec.sign = best % len(auc), (1 if best < len(auc) else -1)
            rec.train_auroc = float(candidates[best])
        else:
            rec.concept = int(np.argmax(auc))
            rec.train_auroc = float(auc[rec.concept])
        if 0 < n_te < len(y_test):
            rec.test_auroc = float(auroc_columns(rec.sign * V_test[:, rec.concept], y_test)[0])
        else:
            rec.note = "test split has no positives" if n_te == 0 else "every test sample has this value"
        if concept_words is not None and word is not None:
            words = concept_words[rec.concept]
            rec.word_in_grounding = word.lower() in words or f"{word.lower()}s" in words

    scored = [v.test_auroc for v in out if v.test_auroc is not None]
    hits = [v.word_in_grounding for v in out if v.test_auroc is not None and v.word_in_grounding is not None]
    return RecoveryResult(
        values=out,
        mean_test_auroc=float(np.mean(scored)) if scored else None,
        word_hit_rate=float(np.mean(hits)) if hits else None,
    )


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"codes must be 2-D [n_samples, n_concepts], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("codes hold NaN or inf; check the dictionary's encode output")
    return x


def _word_lookup(value_word: ValueWord | Mapping[tuple[str, str], str] | None) -> ValueWord:
    if value_word is None:
        return lambda attr, value: value
    if isinstance(value_word, Mapping):
        return lambda attr, value: value_word.get((attr, value))
    return value_word
