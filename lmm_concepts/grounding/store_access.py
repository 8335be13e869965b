"""Read what grounding and metrics need from a RepresentationStore (or any object with the same attributes:
`layers`, `layer(name)`, `metadata`, `sample_ids`, `images(ids)`, `manifest`)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from lmm_concepts.errors import InputError

FINAL_NAMES = ("final", "ln_final.hook_normalized")


def as_store(store, what: str = "store"):
    """`store` as an object with the store attributes: a store folder is opened; None or anything else is refused."""
    if isinstance(store, (str, os.PathLike)):
        from lmm_concepts.extraction.store import RepresentationStore

        return RepresentationStore.open(store)
    if not all(hasattr(store, a) for a in ("layers", "layer", "metadata", "sample_ids")):
        raise InputError(
            f"{what} must be a RepresentationStore (lmm_concepts.RepresentationStore.open(folder)) or its folder, "
            f"got {type(store).__name__}"
        )
    return store


def pick_layer(store, layer: str | int | None) -> str:
    """The store layer to use: `layer` if given, else the only one, else the final one; or a clear error."""
    layers = [str(x) for x in store.layers]
    if layer is not None and hasattr(store, "hook_name"):  # a RepresentationStore resolves indices and "final"
        try:
            return store.hook_name(layer)
        except (KeyError, ValueError) as e:
            raise InputError(f"the store has no layer {layer!r}; it holds {layers}") from e
    if layer is not None:
        name = str(layer)
        if name not in layers and not (name in FINAL_NAMES and any(x in FINAL_NAMES for x in layers)):
            raise InputError(f"the store has no layer {layer!r}; it holds {layers}")
        if name in FINAL_NAMES:
            return next(x for x in layers if x in FINAL_NAMES)
        return name
    if len(layers) == 1:
        return layers[0]
    finals = [x for x in layers if x in FINAL_NAMES]
    if finals:
        return finals[0]
    raise InputError(f"the store holds several layers {layers}: say which one the dictionary was fitted on (layer=...)")


def store_matrix(store, layer: str) -> Tensor:
    Z = store.layer(layer)
    if not isinstance(Z, Tensor):
        Z = torch.as_tensor(Z)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise InputError(f"the store's layer {layer!r} is empty (shape {tuple(Z.shape)}): extract some samples first")
    return Z


def manifest_get(store, key: str, default: Any = None) -> Any:
    manifest = getattr(store, "manifest", None)
    if manifest is None:
        return default
    if isinstance(manifest, dict):
        return manifest.get(key, default)
    return getattr(manifest, key, default)


def meta_get(store, row: int, key: str, default: Any = None) -> Any:
    meta = store.metadata[row]
    if isinstance(meta, dict):
        return meta.get(key, default)
    return getattr(meta, key, default)


def encode_all(dictionary, Z: Tensor, batch_size: int = 4096) -> Tensor:
    """Codes V [n, K] of Z, in batches (the encoder's memory grows with the batch)."""
    if dictionary.W_dec is None:
        raise RuntimeError(f"{type(dictionary).__name__} is not fitted: call .fit(Z) before grounding it")
    if Z.shape[1] != dictionary.W_dec.shape[1]:
        raise InputError(
            f"the store's vectors have d={Z.shape[1]} but the dictionary was fitted on d={dictionary.W_dec.shape[1]}"
        )
    with torch.no_grad():
        return torch.cat([dictionary.encode(Z[i : i + batch_size]).float().cpu() for i in range(0, len(Z), batch_size)])
