"""The report's data: panel dataclasses that round-trip through JSON, and image thumbnails as base64 PNG.

The HTML is rendered from these alone (`render.py`), so a saved report can be re-rendered, restyled or read
by other tools without rerunning anything. Everything quantitative comes from `results.json`; the
per-concept and per-image panels (words, most activating samples, histograms, thumbnails, concept activations
along captions) are saved beside it in `panels.json`.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Word:
    """One grounded word and its logit-lens value."""

    word: str
    logit: float


@dataclass
class ConceptPanel:
    """One concept: its grounded words, most activating samples and the distribution of its activation."""

    index: int
    words: list[Word] = field(default_factory=list)
    #: ids of its most activating samples (keys of `Panels.images`), strongest first
    mas: list[str] = field(default_factory=list)
    mas_activations: list[float] = field(default_factory=list)
    #: histogram of its activation over the training samples: len(edges) == len(counts) + 1
    hist_edges: list[float] = field(default_factory=list)
    hist_counts: list[int] = field(default_factory=list)
    #: attribute values (e.g. "colour=red") for which recovery chose this concept
    recovers: list[str] = field(default_factory=list)
    #: share of training samples where the concept is active (non-zero); the histogram shows only those
    frac_active: float | None = None
    #: largest |activation| over the training samples: the full colour of its tokens along a caption
    max_abs: float | None = None


@dataclass
class ImagePanel:
    """One test image and its strongest concepts."""

    id: str
    caption: str = ""
    generated: str = ""
    #: (concept index, activation), strongest first
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class CaptionPanel:
    """One sample's sequence with every concept's activation at every token (visual tokens collapsed into one)."""

    id: str
    tokens: list[str] = field(default_factory=list)
    #: "visual", "prompt" or "generated", one per token
    kinds: list[str] = field(default_factory=list)
    #: [n_tokens][K] activations
    acts: list[list[float]] = field(default_factory=list)
    #: index of the token whose vector the store holds
    position: int = 0


@dataclass
class MethodPanels:
    name: str
    concepts: list[ConceptPanel] = field(default_factory=list)
    images: list[ImagePanel] = field(default_factory=list)
    captions: list[CaptionPanel] = field(default_factory=list)


@dataclass
class Panels:
    """Everything the report shows that isn't a number in results.json."""

    methods: list[MethodPanels] = field(default_factory=list)
    #: sample id -> PNG thumbnail as base64 (no data: prefix)
    images: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Panels:
        methods = []
        for m in d.get("methods", []):
            concepts = [
                ConceptPanel(**{**c, "words": [Word(**w) for w in c.get("words", [])]}) for c in m.get("concepts", [])
            ]
            images = [ImagePanel(**{**i, "top": [tuple(t) for t in i.get("top", [])]}) for i in m.get("images", [])]
            captions = [CaptionPanel(**c) for c in m.get("captions", [])]
            methods.append(MethodPanels(m["name"], concepts, images, captions))
        return cls(methods=methods, images=dict(d.get("images", {})))


def thumbnail_b64(image: Any, size: int = 64) -> str:
    """A PIL image (or path) as a base64 PNG thumbnail of at most `size` pixels a side."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.open(image)
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def histogram(values: Sequence[float] | np.ndarray, bins: int = 20) -> tuple[list[float], list[int]]:
    """(edges, counts) of `values`, as lists for JSON."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return [0.0, 1.0], [0]
    counts, edges = np.histogram(values, bins=bins)
    return [float(e) for e in edges], [int(c) for c in counts]
