"""What every dashboard shows of a concept, computed once from a run's outputs (the format writers only lay it out).

Sources (K concepts, n samples in the store):
    V             [n, K]  codes of the store's vectors, `dictionary.encode` with the full dictionary
    top samples           each concept's `n_samples` largest codes in V (with the explanations' n_images: their
                          most activating samples); for each, the sequence regenerated and encoded at every token
                          (`report/along_caption.py`, visual tokens collapsed into one "<image ×N>" token whose value
                          is the run's largest in magnitude), its image (inline PNG thumbnail, the store's path, or
                          nothing) and captions
    logit lens    [K, V]  each concept vector through the explanations' lens (`grounding.words.lens_logits`: "raw" =
                          W_U·u, "ln_final" = W_U·ln_final(u), + b_U when they used it): top and bottom tokens, and the
                          histogram of all vocabulary logits
    activations           histogram of the concept's non-zero codes in V (all codes for signed dictionaries such as
                          PCA); density = share of the store's samples with a non-zero code
    correlated            the concepts whose codes in V correlate most (Pearson) with this one, with the cosine of
                          the code columns

Every activation comes from the full dictionary. SAEDashboard computes a batch of features with
`FeatureMaskingContext`, which keeps only those features' rows of `W_dec` (and columns of `W_enc`): harmless for a
linear encoder, wrong for a lasso, whose codes depend on every atom. Measured on the toy's Semi-NMF (K = 8, l1 = 1,
the demo's 294 training rows; `python -m benchmarks.export_masking runs/demo/reps/train`): keeping concepts 0 and 1
changes concept 0's code on 80 % of the rows, and over all pairs a kept concept's code on 65 % (26–85 %). So our exports hold codes computed here with the full dictionary, never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from lmm_concepts.grounding.store_access import encode_all, meta_get, pick_layer, store_matrix
from lmm_concepts.grounding.words import lens_logits
from lmm_concepts.report.along_caption import CaptionActivations, read_captions
from lmm_concepts.report.panels import thumbnail_b64

ImageMode = Literal["inline", "reference", "none"]
IMAGE_MODES = ("inline", "reference", "none")


@dataclass
class TopSample:
    """One of a concept's most activating samples, with the concept's activation at every token of its sequence."""

    sample_id: str
    row: int
    """row of the sample in the store"""
    activation: float
    """the concept's code at the stored token"""
    tokens: list[str]
    token_ids: list[int]
    values: list[float]
    """the concept's activation at each token"""
    token_logits: list[float]
    """the concept's logit-lens value for each token (0 for ids outside the vocabulary, e.g. image placeholders)"""
    position: int
    """index in `tokens` of the token the store holds"""
    caption: str
    """the generated caption"""
    captions: list[str]
    """the dataset's captions"""
    image: str | None
    """base64 PNG thumbnail (images="inline"), the image's path ("reference"), or None"""


@dataclass
class ConceptFeature:
    """One concept as the dashboards show it (see the module docstring for each field's source)."""

    index: int
    words: list[str]
    top: list[TopSample]
    pos_tokens: list[str]
    pos_ids: list[int]
    pos_values: list[float]
    neg_tokens: list[str]
    neg_ids: list[int]
    neg_values: list[float]
    act_centres: list[float]
    act_counts: list[int]
    logit_centres: list[float]
    logit_counts: list[int]
    frac_nonzero: float
    max_activation: float
    correlated: list[tuple[int, float, float]] = field(default_factory=list)
    """(concept, Pearson correlation of the codes, cosine of the codes), strongest first"""


@dataclass
class FeatureSet:
    """The concepts of one dictionary, with what the dashboards say about where they come from."""

    features: list[ConceptFeature]
    codes: Tensor
    """V [n, K]: every sample's codes (full dictionary), for statistics such as quantiles"""
    hook_name: str
    n_layers: int | None
    n_samples: int
    dataset: str
    dropped: list[str] = field(default_factory=list)
    """top samples whose regenerated caption differed from the stored one (left out)"""


def histogram(values: Tensor, bins: int) -> tuple[list[float], list[int]]:
    """Bin centres and counts (the viewers' bar_values / bar_heights: parallel lists)."""
    values = values.float()
    if values.numel() == 0:
        return [], []
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        return [round(lo, 5)], [int(values.numel())]
    counts = torch.histc(values, bins=bins, min=lo, max=hi)
    width = (hi - lo) / bins
    return [round(lo + width * (i + 0.5), 5) for i in range(bins)], [int(c) for c in counts.tolist()]


def correlated_concepts(V: Tensor, k: int, n: int = 3) -> list[tuple[int, float, float]]:
    """The `n` concepts whose codes correlate most with concept k's (Pearson), with the cosine of the codes."""
    if V.shape[1] < 2 or V.shape[0] < 2:
        return []
    X = V.double()
    centred = X - X.mean(0)
    norms = centred.norm(dim=0).clamp_min(1e-12)
    pearson = (centred[:, k] @ centred) / (norms[k] * norms)
    cosine = (X[:, k] @ X) / (X[:, k].norm().clamp_min(1e-12) * X.norm(dim=0).clamp_min(1e-12))
    pearson[k] = -float("inf")
    order = pearson.argsort(descending=True)[: min(n, V.shape[1] - 1)]
    return [(int(j), round(float(pearson[j]), 4), round(float(cosine[j]), 4)) for j in order]


def _image(store, sample_id: str, mode: ImageMode, size: int) -> str | None:
    if mode == "none":
        return None
    if mode == "reference":
        return str(store.image_path(sample_id))
    return thumbnail_b64(store.images([sample_id])[0], size)


def concept_features(
    explanations,
    store,
    model,
    *,
    n_samples: int | None = None,
    images: ImageMode = "inline",
    n_logits: int = 10,
    n_bins: int = 40,
    thumbnail_size: int = 96,
    batch_size: int = 8,
) -> FeatureSet:
    """Every concept of `explanations` (holding its fitted `dictionary`) on `store`, with `model` regenerating the top
    samples' sequences; `n_samples` per concept (default: the explanations' n_images)."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
    dictionary = explanations.dictionary
    layer = pick_layer(store, explanations.layer)
    V = encode_all(dictionary, store_matrix(store, layer).to(dictionary.W_dec.device))
    signed = bool(getattr(explanations, "signed_codes", False))
    n_top = min(n_samples or explanations.n_images or 5, V.shape[0])
    top_act, top_rows = V.topk(n_top, dim=0)  # [n_top, K]
    ids = list(store.sample_ids)
    wanted = sorted({ids[r] for r in top_rows.flatten().tolist()})
    regen = read_captions(model, store, wanted, layer=layer, batch_size=batch_size)
    along: dict[str, CaptionActivations] = {c.sample_id: c.encode(dictionary).collapsed() for c in regen.captions}
    logits = lens_logits(model, explanations.W_dec.float(), lens=explanations.lens,
                         use_bias=explanations.use_bias).float().cpu()
    d_vocab = logits.shape[1]
    tokenizer = model.tokenizer
    row_of = {s: i for i, s in enumerate(ids)}
    features = []
    for k in range(V.shape[1]):
        v = V[:, k]
        top = []
        for act, row in zip(top_act[:, k].tolist(), top_rows[:, k].tolist(), strict=True):
            sid = ids[row]
            if (act <= 0 and not signed) or sid not in along:
                continue
            c = along[sid]
            top.append(TopSample(
                sample_id=sid, row=row_of[sid], activation=float(act), tokens=list(c.tokens), token_ids=list(c.token_ids),
                values=[round(float(x), 4) for x in c.acts[:, k]],
                token_logits=[round(float(logits[k, t]), 4) if 0 <= t < d_vocab else 0.0 for t in c.token_ids],
                position=c.position, caption=c.caption, captions=list(meta_get(store, row, "captions") or []),
                image=_image(store, sid, images, thumbnail_size),
            ))  # fmt: skip
        pos_values, pos_ids = logits[k].topk(min(n_logits, d_vocab))
        neg_values, neg_ids = logits[k].topk(min(n_logits, d_vocab), largest=False)
        act_centres, act_counts = histogram(v if signed else v[v != 0], n_bins)
        logit_centres, logit_counts = histogram(logits[k], n_bins)
        features.append(ConceptFeature(
            index=k, words=list(explanations.concepts[k].words), top=top,
            pos_tokens=[tokenizer.decode([int(t)]) for t in pos_ids], pos_ids=pos_ids.tolist(),
            pos_values=[round(float(x), 4) for x in pos_values],
            neg_tokens=[tokenizer.decode([int(t)]) for t in neg_ids], neg_ids=neg_ids.tolist(),
            neg_values=[round(float(x), 4) for x in neg_values],
            act_centres=act_centres, act_counts=act_counts, logit_centres=logit_centres, logit_counts=logit_counts,
            frac_nonzero=float((v != 0).float().mean()), max_activation=float(v.max()),
            correlated=correlated_concepts(V, k),
        ))  # fmt: skip
    manifest = getattr(store, "manifest", {}) or {}
    dataset = manifest.get("dataset") or {}
    return FeatureSet(
        features=features, codes=V, hook_name=layer, n_layers=(manifest.get("model") or {}).get("n_layers"),
        n_samples=V.shape[0], dataset=str(dataset.get("class", "")) if isinstance(dataset, dict) else str(dataset),
        dropped=list(regen.dropped),
    )
