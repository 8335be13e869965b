"""Build report panels from the pipeline's objects: explanations, codes, recovery results, captions and stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lmm_concepts.grounding.store_access import encode_all, pick_layer, store_matrix
from lmm_concepts.metrics.recovery import RecoveryResult
from lmm_concepts.report.along_caption import CaptionActivations
from lmm_concepts.report.panels import (
    CaptionPanel,
    ConceptPanel,
    ImagePanel,
    MethodPanels,
    Panels,
    Word,
    histogram,
    thumbnail_b64,
)


def _recovers(recovery: RecoveryResult | Mapping[str, Any] | None) -> dict[int, list[str]]:
    """Concept -> the attribute values recovery chose it for (from a RecoveryResult or its `to_dict()`)."""
    values = recovery.to_dict()["values"] if isinstance(recovery, RecoveryResult) else (recovery or {}).get("values", [])
    out: dict[int, list[str]] = {}
    for v in values:
        if v.get("concept") is not None and v.get("test_auroc") is not None:
            out.setdefault(v["concept"], []).append(f"{v['attribute']}={v['value']}{'' if v['sign'] > 0 else ' (−)'}")
    return out


def method_panels(
    name: str,
    explanations,
    train_codes: torch.Tensor,
    test_codes: torch.Tensor,
    test_ids: Sequence[str],
    test_rows: Sequence[Mapping[str, Any]],
    recovery: RecoveryResult | Mapping[str, Any] | None = None,
    n_show: int = 12,
    r: int = 3,
    captions: Sequence[CaptionActivations] = (),
) -> MethodPanels:
    """Concept cards (words, MAS, activation histogram, what it recovers), the first `n_show` test images with their
    top-`r` concepts, and `captions` (concept activations along regenerated sequences)."""
    recovers = _recovers(recovery)
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
                max_abs=float(v.abs().max()) if len(v) else None,
            )
        )
    images = []
    n = min(n_show, test_codes.shape[0])
    if n:
        act, idx = test_codes[:n].topk(min(r, test_codes.shape[1]), dim=1)
        for i in range(n):
            row = test_rows[i]
            captions_gt = row.get("captions") or [""]
            images.append(ImagePanel(str(test_ids[i]), caption=str(captions_gt[0]), generated=str(row.get("generated", "")),
                                     top=[(int(k), float(a)) for k, a in zip(idx[i], act[i], strict=True)]))
    return MethodPanels(name, concepts, images, [caption_panel(c) for c in captions])


def caption_panel(activations: CaptionActivations, digits: int = 4) -> CaptionPanel:
    """A caption's panel: visual tokens collapsed into one, activations rounded for the page."""
    c = activations.collapsed()
    acts = [[round(float(a), digits) for a in row] for row in c.acts.tolist()]
    return CaptionPanel(str(c.sample_id), list(c.tokens), list(c.kinds), acts, c.position)


def collect_thumbnails(panels: Sequence[MethodPanels], stores: Sequence[Any], size: int = 64) -> dict[str, str]:
    """Base64 PNG thumbnails of every image the panels show, read from whichever store holds it."""
    wanted = ({i for m in panels for c in m.concepts for i in c.mas} | {im.id for m in panels for im in m.images}
              | {c.id for m in panels for c in m.captions})
    out: dict[str, str] = {}
    for store in stores:
        have = set(store.sample_ids)
        ids = sorted((wanted & have) - set(out))
        for i, image in zip(ids, store.images(ids), strict=True):
            out[i] = thumbnail_b64(image, size)
    return out


def build_panels(
    explanations: Mapping[str, Any],
    store,
    test_store,
    results: Mapping[str, Any],
    captions: Mapping[str, Sequence[CaptionActivations]] | None = None,
    *,
    n_show: int = 12,
    r: int = 3,
) -> Panels:
    """Panels for every method of `explanations` (name -> Explanations holding its fitted `dictionary`): codes of
    `store` (histograms) and of `test_store` (test images' top concepts), recovery from
    `results["methods"][name]["recovery"]` when present, and the methods' `captions`."""
    methods = []
    for name, expl in explanations.items():
        dictionary = expl.dictionary
        train = encode_all(dictionary, store_matrix(store, pick_layer(store, expl.layer)).to(dictionary.W_dec.device))
        test_layer = pick_layer(test_store, expl.layer)
        n = min(n_show, len(test_store))
        test = encode_all(dictionary, store_matrix(test_store, test_layer)[:n].to(dictionary.W_dec.device))
        recovery = results.get("methods", {}).get(name, {}).get("recovery")
        methods.append(method_panels(name, expl, train, test, test_store.sample_ids[:n], test_store.metadata[:n],
                                     recovery, n_show=n_show, r=min(r, expl.n_concepts),
                                     captions=(captions or {}).get(name, ())))
    stores = [store] if test_store is store else [store, test_store]
    return Panels(methods=methods, images=collect_thumbnails(methods, stores))
