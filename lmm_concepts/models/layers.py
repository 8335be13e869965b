"""Layer arguments as hook names: the one resolver every stage and command uses.

A layer is given as
- a block index `L` (an int or a string such as "3" or "-1"; negative counts from the end): the residual stream
  after block L, `blocks.{L}.hook_resid_post`, range-checked against the model's number of blocks;
- "final": `FINAL_HOOK` (`ln_final.hook_out`), the output of the language model's final norm, gain and bias
  included: the vectors the unembedding reads. A store made when "final" meant TransformerLens's
  `ln_final.hook_normalized` (`LEGACY_FINAL_HOOK`, before the gain and bias) keeps that name: it is read by that name,
  never under "final", since its vectors are other ones;
- any other string: a hook name, taken as it is (checked against the hooks that exist when they are known: the
  model's `hook_dict`, a store's layers).

`resolve_layer` is used by extraction, the store, grounding, steering, the sweeps and every command; `layer_label`
is its inverse for plots and tables.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from typing import Any

from lmm_concepts.errors import InputError
from lmm_concepts.models.interface import FINAL_HOOK, LEGACY_FINAL_HOOK, resid_hook

FINAL = "final"
"""The layer name of the final norm's output."""

_BLOCK = re.compile(r"blocks\.(\d+)\.")
_INDEX = re.compile(r"-?\d+")


def _n_layers_and_hooks(model_or_n_layers: Any, hooks: Collection[str] | None) -> tuple[int, Collection[str] | None]:
    if isinstance(model_or_n_layers, bool) or not isinstance(model_or_n_layers, int):
        n_layers = int(model_or_n_layers.n_layers)
        return n_layers, hooks if hooks is not None else model_or_n_layers.hook_dict
    return model_or_n_layers, hooks


def choices(n_layers: int) -> str:
    """The valid layer arguments of a model with `n_layers` blocks, in words (for error messages)."""
    return (f"a block index (0..{n_layers - 1}, or negative from the end: -{n_layers}..-1), '{FINAL}' (the output "
            f"of the final norm, {FINAL_HOOK}) or a hook name such as {resid_hook(n_layers - 1)}")


def resolve_layer(layer: int | str, model_or_n_layers: Any, hooks: Collection[str] | None = None) -> str:
    """The hook name of `layer` (see the module docstring) for a model (an `LMM`: its `n_layers` and `hook_dict`)
    or a number of blocks; `hooks`, when given, are the names that exist (a model's default: its `hook_dict`).

    Bad input raises `InputError` naming the valid choices."""
    n_layers, known = _n_layers_and_hooks(model_or_n_layers, hooks)
    if isinstance(layer, str) and _INDEX.fullmatch(layer.strip()):
        layer = int(layer)
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise InputError(f"a layer must be an int (a block index), '{FINAL}' or a hook name, got "
                         f"{type(layer).__name__} {layer!r}: give {choices(n_layers)}")
    if isinstance(layer, int):
        if not -n_layers <= layer < n_layers:
            raise InputError(f"layer index {layer} is out of range for a model with {n_layers} layers: give "
                             f"{choices(n_layers)}")
        return resid_hook(layer % n_layers)
    name = FINAL_HOOK if layer == FINAL else layer
    block = _BLOCK.match(name)
    if block and int(block.group(1)) >= n_layers:
        raise InputError(f"the model has no hook point {name!r}: it has {n_layers} blocks; give {choices(n_layers)}")
    if known is not None and name not in known:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        examples = ", ".join(close or [resid_hook(n_layers - 1), FINAL_HOOK])
        raise InputError(f"the model has no hook point {name!r}: give a block index (0..{n_layers - 1}, or negative "
                         f"from the end), '{FINAL}', or a hook name such as {examples}")
    return name


def missing_layer(layer: int | str, name: str, layers: Collection[str], where: str) -> str:
    """Why `layer` (resolved to `name`) is not among the stored `layers` of `where` (e.g. "this store")."""
    hint = ""
    if name == FINAL_HOOK and LEGACY_FINAL_HOOK in layers:
        hint = (f"; {where} holds {LEGACY_FINAL_HOOK}, what layer '{FINAL}' was before it meant {FINAL_HOOK}: "
                f"vectors before the final norm's gain and bias, not the same ones. Ask for {LEGACY_FINAL_HOOK!r} "
                "by name, or extract again")
    return f"layer {layer!r} ({name}) is not in {where}; stored layers: {list(layers)}{hint}"


def is_after_final_norm(hook_name: str) -> bool:
    """Whether vectors read at `hook_name` come out of the final norm (where the bare unembedding is the lens)."""
    return hook_name in (FINAL_HOOK, LEGACY_FINAL_HOOK)


def layer_label(hook_name: str) -> str:
    """The short name of a hook for plots and tables: "blocks.3.hook_resid_post" -> "3", the final norm's output
    -> "final", any other hook -> its name."""
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", hook_name)
    if m:
        return m.group(1)
    return FINAL if hook_name == FINAL_HOOK else hook_name
