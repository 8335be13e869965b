"""`make_report`: the HTML page of any run — the demo's and a real run's outputs go through this one function.

    explanations (+ their dictionaries) ─┐
    store they were grounded on ─────────┼─> results.json (numbers) + panels.json (cards, images, captions)
    test store, evaluations, model ──────┘                                   └─> report.html (render.py)

What the page shows, and where it comes from:
    concept cards        words and logits, most activating samples (the explanations); histogram of the concept's
                         activation over `store` (its dictionary's codes)
    test images          the first `n_show` samples of `test_store` (default: `store`) and their top-r concepts
    along the caption    with `model`: every concept's activation at every token of `n_captions` of those samples,
                         their sequences regenerated (`along_caption.py`)
    metrics, baselines   from the evaluations (`lmm-concepts evaluate`); per-value recovery and the rest of the
                         demo's page (findings, layer sweep, extraction funnel) from `extra`
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmm_concepts.grounding.store_access import pick_layer
from lmm_concepts.models.layers import layer_label
from lmm_concepts.report.along_caption import CaptionActivations, read_captions
from lmm_concepts.report.build import build_panels
from lmm_concepts.report.inputs import (
    PathLike,
    as_evaluations,
    as_explanations,
    check_model,
    check_store,
    describe_model,
    open_store,
    store_model,
)
from lmm_concepts.report.render import write_report


def evaluation_metrics(res) -> dict[str, Any]:
    """The page's numbers from an `EvaluationResults`: the concepts row, overlap, quality, faithfulness, baselines."""
    out: dict[str, Any] = {"overlap": res.overlap, **res.scores.get("concepts", {})}
    baselines = {row: dict(cols) for row, cols in res.scores.items() if row != "concepts"}
    if baselines:
        out["baselines"] = baselines
    if res.mas_words:
        out["mas_words"] = res.mas_words.get("concepts")
    if res.quality:
        out.update(relative_error=res.quality.get("relative_error"), l0=res.quality.get("l0"))
    if res.faithfulness:
        out["faithful_share"] = res.faithfulness.get("frac_above_random")
    if res.notes:
        out["evaluation_notes"] = list(res.notes)
    return out


def page_results(explanations: Mapping[str, Any], store, test_store, evaluations: Mapping[str, Any]) -> dict[str, Any]:
    """results.json for a run: what was explained, on which samples, and each method's evaluation."""
    own_test = test_store is not store
    return {
        "word": getattr(store, "word", ""),
        "layer": ", ".join(dict.fromkeys(layer_label(e.layer) for e in explanations.values())),
        "model": describe_model(store_model(store)) if store_model(store) is not None else None,
        "n_train": len(store),
        "n_test": len(test_store) if own_test else None,
        "methods": {name: evaluation_metrics(evaluations[name]) if name in evaluations else {}
                    for name in explanations},
        "notes": [] if own_test else ["no test store given: the images' top concepts are shown on the store the "
                                      "concepts were grounded on"],
    }


def _merge(base: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """`extra` over `base`; per-method entries are merged key by key."""
    for key, value in (extra or {}).items():
        if key == "methods":
            for name, metrics in value.items():
                base["methods"].setdefault(name, {}).update(metrics)
        elif key == "notes":
            base["notes"] = [*base.get("notes", []), *value]
        else:
            base[key] = value
    return base


def make_report(
    explanations: Any,
    store: Any = None,
    results: Any = None,
    *,
    out: PathLike,
    test_store: Any = None,
    dictionaries: Any = None,
    model: Any = None,
    caption_ids: Sequence[str] | None = None,
    n_captions: int = 4,
    n_show: int = 12,
    r: int = 3,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `out/report.html` (with `results.json` and `panels.json` beside it) for a run; returns the page's path.

    Args:
        explanations: an `Explanations`, an explanations folder, a folder of them (one per method), or a mapping
            name -> either. Each needs its fitted dictionary: kept by `ground`, given in `dictionaries`, or the
            folder `lmm-concepts ground` recorded.
        store: the store they were grounded on (object or folder; default: the one they recorded).
        results: their evaluation — an `EvaluationResults`, its folder, a folder of per-method folders, or a mapping.
        test_store: the samples whose top concepts (and captions) are shown (default: `store`).
        dictionaries: a dictionary (object or folder), or a mapping name -> one.
        model: the model that built the stores; with it, `n_captions` samples (or `caption_ids`) show every
            concept's activation along their caption.
        n_show: test images shown with their top-`r` concepts.
        extra: more page content merged over the computed results (the demo's recovery, findings, sweep, funnel).
    """
    expls = as_explanations(explanations, dictionaries)
    store = open_store(store, expls)
    check_store(expls, store)
    test = store if test_store is None else open_store(test_store, expls, role="test store")
    if test is not store:
        check_store(expls, test, role="test store")
    page = _merge(page_results(expls, store, test, as_evaluations(results, list(expls))), extra)
    captions: dict[str, list[CaptionActivations]] = {}
    if model is not None and n_captions > 0:
        ids = list(caption_ids) if caption_ids is not None else list(test.sample_ids[: min(n_captions, n_show)])
        captions = _captions(model, test, expls, ids, page["notes"])
    elif n_captions > 0:
        page["notes"].append("concept activations along the captions are not shown: they rerun the model, so pass "
                             "the model that built the store (model=..., or --model)")
    panels = build_panels(expls, store, test, page, captions, n_show=n_show, r=r)
    return write_report(out, page, panels)


def _captions(model, store, explanations: Mapping[str, Any], ids: list[str], notes: list[str]):
    """Each method's activations along the captions of `ids`; sequences regenerated once per store layer."""
    check_model(model, store)
    by_layer: dict[str, list[str]] = {}
    for name, expl in explanations.items():
        by_layer.setdefault(pick_layer(store, expl.layer), []).append(name)
    out: dict[str, list[CaptionActivations]] = {}
    for layer, names in by_layer.items():
        regen = read_captions(model, store, ids, layer=layer)
        if regen.dropped:
            notes.append(f"{len(regen.dropped)} samples regenerated another caption than the stored one and are not "
                         f"shown along their caption: {', '.join(map(str, regen.dropped[:5]))}")
        for name in names:
            out[name] = regen.encode(explanations[name].dictionary)
    return out
