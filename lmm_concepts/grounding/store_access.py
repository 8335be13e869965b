"""Read what grounding and metrics need from a RepresentationStore (or any object with the same attributes:
`layers`, `layer(name)`, `metadata`, `sample_ids`, `images(ids)`, `manifest`)."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lmm_concepts.errors import InputError
from lmm_concepts.models.interface import FINAL_HOOK
from lmm_concepts.models.layers import FINAL, missing_layer

FINAL_NAMES = (FINAL, FINAL_HOOK)
"""How a store names its final-norm layer: by its hook (a RepresentationStore) or as "final" (a stand-in store)."""


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
    """The stored name of the layer to use: `layer` if given (a block index, "final" or a hook name, see
    `models.layers`), else the only one, else the final one; or an error naming the stored layers."""
    layers = [str(x) for x in store.layers]
    if layer is not None and hasattr(store, "hook_name"):  # a RepresentationStore resolves indices and "final"
        try:
            return store.hook_name(layer)
        except KeyError as e:
            raise InputError(f"the store has no layer {layer!r}: {e.args[0]}") from None
        except ValueError as e:
            raise InputError(f"the store has no layer {layer!r}: {e}") from None
    if layer is not None:  # a stand-in without the model's dimensions: stored names, "final" for its final layer
        name = str(layer)
        if name in FINAL_NAMES:
            name = next((x for x in layers if x in FINAL_NAMES), FINAL_HOOK)
        if name not in layers:
            raise InputError(f"the store has no layer {layer!r}: "
                             f"{missing_layer(layer, stored_hook(name), layers, 'the store')}")
        return name
    if len(layers) == 1:
        return layers[0]
    finals = [x for x in layers if x in FINAL_NAMES]
    if finals:
        return finals[0]
    raise InputError(f"the store holds several layers {layers}: say which one the dictionary was fitted on (layer=...)")


def stored_hook(name: str) -> str:
    """The hook name of a stored layer name (a stand-in store may call its final layer "final")."""
    return FINAL_HOOK if name == FINAL else name


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


def _as_dict(model: Any) -> Any:
    if isinstance(model, str):
        try:
            return ast.literal_eval(model)
        except (ValueError, SyntaxError):
            return model
    return model


def same_model(a: Any, b: Any) -> bool:
    """Whether two recorded model identities (dicts, or their str) name the same weights."""
    a, b = _as_dict(a), _as_dict(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping) and a.get("weights_digest") and b.get("weights_digest"):
        return a["weights_digest"] == b["weights_digest"] and a.get("d_model") == b.get("d_model")
    return a == b


def describe_model(model: Any) -> str:
    """A recorded model identity in a few words: class (family), layers, width, weights digest."""
    m = _as_dict(model)
    if not isinstance(m, Mapping):
        return str(m)
    config = m.get("config") if isinstance(m.get("config"), Mapping) else {}
    family = f" ({config['family']})" if config.get("family") else ""
    return (f"{m.get('class', 'model')}{family}, {m.get('n_layers')} layers, d_model {m.get('d_model')}, "
            f"weights {m.get('weights_digest')}")


def store_model(store: Any) -> Any:
    """The model identity a store's manifest records (None when it records none)."""
    manifest = getattr(store, "manifest", None)
    return manifest.get("model") if isinstance(manifest, Mapping) else None


def check_store_model(model, store) -> None:
    """Refuse a store whose manifest records another model than `model` (another weights digest or width): its
    vectors live in that model's residual stream, so this model's lens would read them wrongly."""
    theirs = _as_dict(store_model(store))
    if not isinstance(theirs, Mapping) or not theirs.get("weights_digest") or not callable(
        getattr(model, "identity", None)
    ):
        return  # a store (or stand-in) that records no weights digest: nothing to compare
    ours = model.identity()
    if not same_model(ours, theirs):
        raise InputError(f"the store {getattr(store, 'path', '')} was extracted with {describe_model(theirs)}, but "
                         f"the model given is {describe_model(ours)}: ground with the model that extracted it "
                         "(--model ...)")


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
