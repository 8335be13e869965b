"""Writing a dictionary's concepts in a dashboard's layout: `export_dashboard` (see the package docstring)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmm_concepts._io import write_text
from lmm_concepts.errors import InputError
from lmm_concepts.export import neuronpedia, saedashboard
from lmm_concepts.export.features import FeatureSet, ImageMode, concept_features
from lmm_concepts.report.inputs import (
    PathLike,
    RunInputError,
    as_explanations,
    check_model,
    check_store,
    open_store,
    store_model,
)

FORMATS = {"neuronpedia": neuronpedia, "saedashboard": saedashboard}
SIDECAR = "lmm_concepts.json"


def safe_json(obj: Any) -> str:
    """JSON whose "<", ">" and "&" are \\u escapes (valid JSON, the same values once parsed)."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def sidecar(fs: FeatureSet, fmt: str, name: str, explanations, store, images: ImageMode) -> dict[str, Any]:
    return {
        "format": fmt,
        "explanations": explanations.source or name,
        "store": str(getattr(store, "path", "")),
        "hook_name": fs.hook_name,
        "lens": explanations.lens,
        "images": images,
        "note": "every activation was computed with the full dictionary; do not recompute them with SAEDashboard's "
                "feature masking, which changes lasso codes",
        "fields": FORMATS[fmt].FIELDS,
        "dropped_samples": fs.dropped,
        "features": {
            str(f.index): {"words": f.words, "samples": [
                {"sample_id": s.sample_id, "activation": round(s.activation, 4), "caption": s.caption,
                 "captions": s.captions, "image": s.image} for s in f.top]}
            for f in fs.features
        },
    }  # fmt: skip


def export_dashboard(
    explanations: Any,
    store: Any = None,
    *,
    format: str,
    out: PathLike,
    model: Any,
    dictionary: Any = None,
    n_samples: int | None = None,
    images: ImageMode = "inline",
    n_logits: int = 10,
    model_id: str | None = None,
    sae_set: str | None = None,
) -> Path:
    """Write one dictionary's concepts in `format`'s layout into the folder `out`; returns the folder.

    Args:
        explanations: an `Explanations` (holding its dictionary) or an explanations folder.
        store: the store they were grounded on (default: the one they recorded); must come from `model`.
        model: the model that built the store: it regenerates the top samples' sequences and gives the logit lens.
        dictionary: the fitted dictionary (object or folder) when the explanations do not hold or record one.
        n_samples: top samples per concept (default: the explanations' n_images).
        images: "inline" (PNG thumbnails in the sidecar), "reference" (the store's image paths) or "none".
    """
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    expls = as_explanations(explanations, dictionary)
    if len(expls) != 1:
        raise RunInputError(f"export one dictionary at a time: found explanations {', '.join(expls)}; give one "
                            "explanations folder")
    name, expl = next(iter(expls.items()))
    store = open_store(store, expls)
    check_store(expls, store)
    check_model(model, store)
    fs = concept_features(expl, store, model, n_samples=n_samples, images=images, n_logits=n_logits)
    config = (store_model(store) or {}).get("config") or {}
    model_id = model_id or str(config.get("family") or (store_model(store) or {}).get("class") or "model").lower()
    out = Path(out)
    for path, obj in FORMATS[format].files(fs, model_id, sae_set or f"lmm-concepts-{name}").items():
        write_text(out / path, safe_json(obj))
    write_text(out / SIDECAR, safe_json(sidecar(fs, format, name, expl, store, images)))
    return out
