"""Build report panels from the pipeline's objects: explanations, codes, recovery results and stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lmm_concepts.metrics.recovery import RecoveryResult
from lmm_concepts.report.panels import (
    ConceptPanel,
    ImagePanel,
    MethodPanels,
    Panels,
    Word,
    histogram,
    thumbnail_b64,
)


def method_panels(
    name: str,
    explanations,
    train_codes: torch.Tensor,
    test_codes: torch.Tensor,
    test_ids: Sequence[str],
    test_rows: Sequence[Mapping[str, Any]],
    recovery: RecoveryResult | None = None,
    n_show: int = 12,
    r: int = 3,
) -> MethodPanels:
    """Concept cards (words, MAS, activation histogram, what it recovers) and the first `n_show` test images
    with their top-`r` concepts."""
    recovers: dict[int, list[str]] = {}
    for v in recovery.values if recovery else []:
        if v.concept is not None and v.test_auroc is not None:
            recovers.setdefault(v.concept, []).append(f"{v.attribute}={v.value}{'' if v.sign > 0 else ' (−)'}")
    concepts = []
    signed = bool(getattr(explanations, "signed_codes", False))
    for c in explanations.concepts:
        v = train_codes[:, c.index].float()
        active = v if signed else v[v != 0]  # sparse codes: a bar of zeros would flatten every other bar
        edges, counts = histogram(active.numpy())
        concepts.append(
            ConceptPanel(
                index=c.index,
                words=[Word(w, float(s)) for w, s in zip(c.words, c.word_scores, strict=True)],
                mas=[str(i) for i in c.top_sample_ids],
                mas_activations=[float(a) for a in c.top_activations],
                hist_edges=edges,
                hist_counts=counts,
                recovers=recovers.get(c.index, []),
                frac_active=float((v != 0).float().mean()) if len(v) else None,
            )
        )
    images = []
    n = min(n_show, test_codes.shape[0])
    if n:
        act, idx = test_codes[:n].topk(min(r, test_codes.shape[1]), dim=1)
        for i in range(n):
            row = test_rows[i]
            captions = row.get("captions") or [""]
            images.append(ImagePanel(str(test_ids[i]), caption=str(captions[0]), generated=str(row.get("generated", "")),
                                     top=[(int(k), float(a)) for k, a in zip(idx[i], act[i], strict=True)]))
    return MethodPanels(name, concepts, images)


def collect_thumbnails(panels: Sequence[MethodPanels], stores: Sequence[Any], size: int = 64) -> dict[str, str]:
    """Base64 PNG thumbnails of every image the panels show, read from whichever store holds it."""
    wanted = {i for m in panels for c in m.concepts for i in c.mas} | {im.id for m in panels for im in m.images}
    out: dict[str, str] = {}
    for store in stores:
        have = set(store.sample_ids)
        ids = sorted((wanted & have) - set(out))
        for i, image in zip(ids, store.images(ids), strict=True):
            out[i] = thumbnail_b64(image, size)
    return out


def build_panels(state) -> Panels:
    """Panels for every method of a finished demo state (`lmm_concepts.demo.pipeline.DemoState`)."""
    test = state.stores["test"]
    methods = [
        method_panels(m, state.explanations[m], state.codes[m]["train"], state.codes[m]["test"], test.sample_ids,
                      test.metadata, state.recovery.get(m), n_show=state.cfg.n_show)
        for m in state.cfg.methods if m in state.explanations
    ]
    return Panels(methods=methods, images=collect_thumbnails(methods, [state.stores["train"], test]))
