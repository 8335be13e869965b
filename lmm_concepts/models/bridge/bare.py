"""Captioning on the bare HF modules when no hook could fire.

The bridge installs its components in place of HF submodules (`model.language_model.layers.3` becomes a
`BlockBridge` holding the `LlamaDecoderLayer`, whose `self_attn` becomes an attention bridge, and so on down to
each `Linear`). Every call through them runs Python around the HF module (hook points, argument filtering, an
attention reimplemented in Python): measured on CPU, 2.2 ms per layer and decoding step on top of HF's 1.1 ms for
a 2-layer, d_model 128 LLaVA (`benchmarks/bench_bridge_generate.py` measures the end-to-end ratio).

With no hook on any hook point or component and no SAE spliced in, those wrappers compute exactly what the HF
modules compute (the parity tests: logits 0.0 from HF's forward, tokens identical to HF `generate`), so `bare_hf`
puts the HF modules back in their parents for the duration of a `generate` and the bridge's components back after,
whatever happens. With a hook or an SAE, generation runs through the bridge, hooks firing at every step.

The check is made once, before generation: a hook added while `generate` runs (from a logits processor, a
streamer, another thread) does not fire during it. The swap edits the shared model in place, so a `BridgeLMM` is
not to be used from another thread while one of its unhooked `generate` calls runs: a forward there would skip its
hooks, and two overlapping unhooked `generate` calls would restore the components while the other still decodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from lmm_concepts.models.bridge.repairs import is_repair_hook


def hooks_could_fire(bridge: nn.Module, model: nn.Module) -> bool:
    """Whether an SAE is spliced into the bridge, or a hook sits on one of the bridge's hook points or components
    (which `bare_hf` takes out of the call path), other than the bridge's own wiring (a block's capture hooks,
    which feed its hook points) and the repairs'. Hooks on HF modules (a user's, or transformers' own output
    capturing) stay in the call path and fire either way."""
    # sae-lens's public record of spliced SAEs: should it go, an AttributeError here, not a silent bare run
    if bridge.acts_to_saes:
        return True
    bridged = [m for m in model.modules() if isinstance(m, (GeneralizedComponent, HookPoint))]
    wiring = {handle.id for m in bridged for handle in getattr(m, "_capture_hook_handles", ())}
    for module in bridged:
        for hooks in (
            module._forward_hooks,
            module._forward_pre_hooks,
            module._backward_hooks,
            module._backward_pre_hooks,
        ):
            if any(key not in wiring and not is_repair_hook(fn) for key, fn in hooks.items()):
                return True
    return False


def _wrapped_children(model: nn.Module) -> list[tuple[nn.Module, str, GeneralizedComponent]]:
    """(HF parent, child name, bridge component) for every component installed in place of an HF module."""
    found = []
    for parent in model.modules():
        if isinstance(parent, GeneralizedComponent):
            continue  # a component's own children: its HF module, hook points, its sub-components' aliases
        for name, child in parent._modules.items():
            if isinstance(child, GeneralizedComponent) and child.original_component is not None:
                found.append((parent, name, child))
    return found


@contextmanager
def bare_hf(model: nn.Module) -> Iterator[nn.Module]:
    """`model` (the bridge's HF model) with its HF modules back in place of the bridge's components (not
    thread-safe: see the module docstring)."""
    wrapped = _wrapped_children(model)
    try:  # the swap inside: an interrupt halfway through it restores too (a component not yet swapped is a no-op)
        for parent, name, component in wrapped:
            parent._modules[name] = component.original_component
        yield model
    finally:
        for parent, name, component in reversed(wrapped):
            parent._modules[name] = component
