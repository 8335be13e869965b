"""`lmm-concepts export <explanations> --format neuronpedia|saedashboard --out DIR`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simple_parsing import field

from lmm_concepts.models.load import ModelSpec


@dataclass
class ExportConfig:
    """Write a dictionary's concepts in a feature dashboard's layout (see lmm_concepts.export for each field)."""

    explanations: str = field(positional=True)
    """explanations folder (`lmm-concepts ground`)"""
    format: Literal["neuronpedia", "saedashboard"] = "neuronpedia"
    """neuronpedia (batch-0.json) or saedashboard (feature_data.json, SaeVisData.save_json's layout)"""
    out: str = field(default="", alias=["-o"])
    """output folder (default: <explanations>/<format>)"""
    store: str = ""
    """the store the explanations were grounded on (default: the one they recorded)"""
    dictionary: str = ""
    """dictionary folder (default: the one `lmm-concepts ground` recorded)"""
    n_samples: int = 0
    """top samples per concept (0: the explanations' n_images)"""
    images: Literal["inline", "reference", "none"] = "inline"
    """top samples' images in the sidecar lmm_concepts.json: PNG thumbnails, the store's paths, or none"""
    n_logits: int = 10
    """top and bottom logit-lens tokens per concept"""
    model_id: str = ""
    """Neuronpedia model id (default: the store's model family)"""
    sae_set: str = ""
    """Neuronpedia SAE set name (default: lmm-concepts-<explanations folder name>)"""
    model: ModelSpec = field(default_factory=lambda: ModelSpec(model=""))
    """the model that built the store ("" = the toy when the store was made by it)"""


def export_command(cfg: ExportConfig) -> None:
    from pathlib import Path

    from lmm_concepts.export import export_dashboard
    from lmm_concepts.report.command import load_model
    from lmm_concepts.report.inputs import (
        RunInputError,
        as_explanations,
        describe_model,
        open_store,
        store_model,
    )

    expls = as_explanations(cfg.explanations, cfg.dictionary or None)
    store = open_store(cfg.store or None, expls)
    model = load_model(cfg.model, store)
    if model is None:
        raise RunInputError(f"export regenerates the top samples' captions with the model that built the store "
                            f"({describe_model(store_model(store))}): give it with --model")
    out = export_dashboard(expls, store, format=cfg.format, out=cfg.out or Path(cfg.explanations) / cfg.format,
                           model=model, n_samples=cfg.n_samples or None, images=cfg.images, n_logits=cfg.n_logits,
                           model_id=cfg.model_id or None, sae_set=cfg.sae_set or None)
    print(f"wrote {cfg.format} files to {out}")
