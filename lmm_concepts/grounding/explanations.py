"""Concept explanations as plain dataclasses, saved as JSON + safetensors (written atomically), and `explain`: the
strongest concepts of one sample, read through them.

On-disk schema (a folder):
    explanations.json
        schema: "lmm_concepts.explanations/1"
        layer, hook_name, lens, use_bias, n_words, n_images, n_candidates, signed_codes, model, store, notes
        dictionary_path  the folder of the dictionary they were grounded from, when it was loaded from one (null
                         otherwise): what `lmm-concepts report` and `export` encode samples with
        random_words     per concept, the words of a random direction of the same norm (same lens and filter):
                         the random-words baseline
        concepts: list, one per concept k (in dictionary order):
            index            k
            words            grounded words, rank order (may be fewer than n_words: see `short`)
            word_scores      their lens logits
            word_token_ids   token ids of each word (every case / leading-space variant among the candidates)
            candidates       the decoded top-n_candidates tokens before filtering
            short            true when the filter left fewer than n_words words (never padded)
            top_sample_ids   ids of the most activating samples (MAS), strongest first
            top_activations  their activations v_k
            top_image_paths  their image paths (from the store's metadata; null when unknown)
            stats            mean, std, max, frac_active (share of samples with v_k > 0), n_samples
    explanations.safetensors
        W_dec  [K, d_model]  the concept vectors the words were read from
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from lmm_concepts._io import read_json, write_json, write_safetensors
from lmm_concepts.errors import InputError
from lmm_concepts.grounding.store_access import encode_all, meta_get, pick_layer, store_matrix

SCHEMA = "lmm_concepts.explanations/1"


@dataclass
class ConceptExplanation:
    """One concept grounded in words (logit lens) and in images (most activating samples)."""

    index: int
    words: list[str]
    word_scores: list[float]
    word_token_ids: list[list[int]]
    candidates: list[str]
    short: bool
    top_sample_ids: list[Any]
    top_activations: list[float]
    top_image_paths: list[str | None]
    stats: dict[str, float]

    def text(self) -> str:
        """The reference code's CLIP prompt for this concept."""
        return concept_text(self.words)


def concept_text(words: list[str]) -> str:
    """"A photo is described by the words w1, w2, …" (the reference code's CLIPScore text)."""
    return "A photo is described by the words " + ", ".join(words)


@dataclass
class Explanations:
    """All concepts of one dictionary grounded on one store layer. `dictionary` is kept in memory only."""

    concepts: list[ConceptExplanation]
    W_dec: Tensor
    layer: str
    hook_name: str
    lens: str
    use_bias: bool
    n_words: int
    n_images: int
    n_candidates: int
    signed_codes: bool = False
    model: str | None = None
    store: str | None = None
    notes: list[str] = field(default_factory=list)
    random_words: list[list[str]] = field(default_factory=list)
    """baseline: the words of random directions (one per concept, same norms) through the same lens and filter"""
    dictionary_path: str | None = None
    """the saved dictionary these explanations were grounded from (set by `lmm-concepts ground`), if any"""
    dictionary: Any = field(default=None, repr=False, compare=False)
    source: str | None = field(default=None, repr=False, compare=False)
    """the folder these explanations were loaded from (set by `load`, not saved)"""

    def __len__(self) -> int:
        return len(self.concepts)

    def __getitem__(self, k: int) -> ConceptExplanation:
        return self.concepts[k]

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def words(self) -> list[list[str]]:
        return [c.words for c in self.concepts]

    def images(self, k: int, store) -> list:
        """The most activating images of concept k, read from the store they were found in."""
        return store.images(list(self.concepts[k].top_sample_ids))

    def paired(self, dictionary=None, *, needed_for: str | None = None):
        """The dictionary to encode new data with: `dictionary` if given, else the one kept in memory, checked to be
        the one these explanations were grounded from (`check_pairing`). None when there is none, unless
        `needed_for` names the caller, which then gets an error saying how to pass it."""
        dictionary = dictionary if dictionary is not None else self.dictionary
        if dictionary is None:
            if needed_for is None:
                return None
            raise ValueError(
                f"{needed_for} needs the fitted dictionary to encode samples: pass dictionary=..., or load the "
                "explanations with Explanations.load(path, dictionary=...)"
            )
        check_pairing(self.W_dec, dictionary)
        return dictionary

    def explain(self, sample, r: int = 3, *, store=None, dictionary=None) -> SampleExplanation:
        """Top-r concepts of one sample (see `lmm_concepts.explain`)."""
        return explain(self, sample, r=r, store=store, dictionary=dictionary)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write `path/explanations.json` and `path/explanations.safetensors` atomically; returns the folder."""
        path = Path(path)
        skip = ("concepts", "W_dec", "dictionary", "source")  # asdict(self) would deep-copy the dictionary module
        meta = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        meta = {"schema": SCHEMA, **meta, "concepts": [asdict(c) for c in self.concepts]}
        write_safetensors(path / "explanations.safetensors", {"W_dec": self.W_dec})
        write_json(path / "explanations.json", meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, dictionary=None) -> Explanations:
        """Read a folder written by `save`; pass the fitted `dictionary` to use `explain` / `evaluate` on new data."""
        path = Path(path)
        meta_path = path / "explanations.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no explanations.json in {path}: give the folder written by Explanations.save")
        meta = read_json(meta_path)
        if meta.pop("schema", None) != SCHEMA:
            raise ValueError(f"{meta_path} is not an {SCHEMA} file")
        concepts = [ConceptExplanation(**c) for c in meta.pop("concepts")]
        W_dec = load_file(str(path / "explanations.safetensors"))["W_dec"]
        if dictionary is not None:
            check_pairing(W_dec, dictionary)
        return cls(concepts=concepts, W_dec=W_dec, dictionary=dictionary, source=str(path), **meta)

    def to(self, device: str | torch.device) -> Explanations:
        self.W_dec = self.W_dec.to(device)
        return self


PAIRING_RTOL = 1e-5
"""`check_pairing`'s tolerance, relative to the largest |entry|: float32 rounding (a dictionary cast to float32 and
back, or moved between devices, still pairs), far below what a refit changes (another seed, l1 or K moves
entries by O(their size))."""


def check_pairing(W_dec: Tensor, dictionary) -> None:
    """Raise unless `dictionary.W_dec` equals `W_dec`, the concept vectors explanations were grounded from.

    Codes from another dictionary (another fit, seed, l1, or the same fit with rows reordered) would be read as these
    concepts without a word, so equal shapes are not enough: the vectors themselves must agree (to float32 rounding)."""
    theirs = getattr(dictionary, "W_dec", None)
    if theirs is None:
        raise RuntimeError(f"{type(dictionary).__name__} is not fitted: pass the fitted dictionary the explanations "
                           "were grounded from")
    theirs = theirs.detach().to("cpu", torch.float64)
    ours = W_dec.detach().to("cpu", torch.float64)
    if tuple(theirs.shape) != tuple(ours.shape):
        raise ValueError(
            f"the dictionary has W_dec {tuple(theirs.shape)} but these explanations were grounded from "
            f"{tuple(ours.shape)}: pass the dictionary they were made from"
        )
    diff = (theirs - ours).abs().max().item() if ours.numel() else 0.0
    scale = max(ours.abs().max().item() if ours.numel() else 0.0, 1e-12)
    if not diff <= PAIRING_RTOL * scale:  # also catches NaN
        rows = ((theirs - ours).abs().amax(dim=1) > PAIRING_RTOL * scale).nonzero().flatten().tolist()
        raise ValueError(
            f"the dictionary's concept vectors differ from those these explanations were grounded from (rows "
            f"{rows[:8]}{' ...' if len(rows) > 8 else ''} of {ours.shape[0]}, max difference {diff:.3g}): it is "
            "another fit. Pass the dictionary the explanations were made from, or ground this one "
            "(lc.ground(model, dictionary, store))"
        )


@dataclass
class SampleExplanation:
    """The r strongest concepts of one sample, with their words and most activating samples."""

    sample_id: Any
    concepts: list[int]
    activations: list[float]
    words: list[list[str]]
    top_sample_ids: list[list[Any]]
    """per concept, its most activating samples (from the store it was grounded on)"""
    top_image_paths: list[list[str | None]]
    image_path: str | None = None
    captions: list[str] | None = None


def top_concepts(V: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Activations and indices of each row's r strongest concepts, strongest first."""
    if r < 1:
        raise InputError(f"r must be ≥ 1, got {r}")
    if r > V.shape[1]:
        raise InputError(f"r={r} is more than the dictionary's {V.shape[1]} concepts")
    return V.topk(r, dim=1)


def explain(explanations: Explanations, sample, r: int = 3, *, store=None, dictionary=None) -> SampleExplanation:
    """The top-r concepts of one sample: a representation vector [d] or a sample id of `store`."""
    dictionary = explanations.paired(dictionary, needed_for="explain")
    sample_id, image_path, captions = None, None, None
    if isinstance(sample, Tensor):
        z = sample.reshape(1, -1) if sample.ndim == 1 else sample
        if z.shape[0] != 1:
            raise InputError(f"explain takes one sample, got {z.shape[0]} rows; call it per row")
    else:
        if store is None:
            raise InputError(f"sample {sample!r} is an id: pass the store it comes from (store=...)")
        ids = list(store.sample_ids)
        if sample not in ids:
            raise KeyError(f"sample id {sample!r} is not in the store ({len(ids)} samples)")
        row = ids.index(sample)  # one look-up: a linear scan is fine
        z = store_matrix(store, pick_layer(store, explanations.layer))[row : row + 1]
        sample_id = sample
        image_path = meta_get(store, row, "image_path")
        captions = meta_get(store, row, "captions")
    with torch.no_grad():
        v = encode_all(dictionary, z.to(dictionary.W_dec.device))
    act, idx = top_concepts(v, r)
    ks = idx[0].tolist()
    return SampleExplanation(
        sample_id=sample_id,
        concepts=ks,
        activations=act[0].tolist(),
        words=[explanations[k].words for k in ks],
        top_sample_ids=[explanations[k].top_sample_ids for k in ks],
        top_image_paths=[explanations[k].top_image_paths for k in ks],
        image_path=image_path,
        captions=captions,
    )
