"""TransformerLens hook functions shared by grounding, faithfulness and steering.

Each factory returns a function `hook(activation, hook) -> activation` for an `LMM`'s `fwd_hooks=[(name, fn)]`
(`model.hooks`, `model.capture`, `model.logits`). Activations at a residual-stream hook are `[batch, pos, d_model]`;
`positions` picks one token per batch row (`None` = every position).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

HookFn = Callable[[Tensor, object], Tensor]


def _rows(n: int, device: torch.device) -> Tensor:
    return torch.arange(n, device=device)


def _check_batch(name: str, values: Tensor, batch: int) -> None:
    if values.shape[0] != batch:
        raise ValueError(f"{name} has {values.shape[0]} rows but the forward pass has batch size {batch}")


def add_direction_hook(
    direction: Tensor,
    alpha: float | Tensor = 1.0,
    positions: Tensor | None = None,
) -> HookFn:
    """x ← x + α·direction, at every position or at `positions[b]` of each row b.

    Shapes: direction [d_model] or [batch, d_model]; alpha a float or [batch]; positions [batch] ints.

    `direction` is one vector for the whole batch or one per row; `alpha` a scalar or one per row.
    During cached generation later steps see one position at a time; with `positions=None` each is steered.
    """

    def hook(x: Float[Tensor, "batch pos d_model"], hook=None) -> Tensor:
        delta = direction.to(device=x.device, dtype=x.dtype)
        a = torch.as_tensor(alpha, device=x.device, dtype=x.dtype)
        if delta.ndim == 1:
            delta = delta.expand(x.shape[0], -1)
        _check_batch("direction", delta, x.shape[0])
        delta = delta * (a[:, None] if a.ndim == 1 else a)
        if positions is None:
            return x + delta[:, None, :]
        pos = positions.to(x.device)
        _check_batch("positions", pos, x.shape[0])
        x = x.clone()
        x[_rows(x.shape[0], x.device), pos] += delta
        return x

    return hook


def remove_component_hook(
    components: Float[Tensor, "batch d_model"],
    positions: Tensor,
) -> HookFn:
    """x[b, positions[b]] ← x[b, positions[b]] − components[b] (e.g. components = v_k·u_k: remove one concept)."""

    return add_direction_hook(components, -1.0, positions)


def capture_hook(store: dict[str, Tensor], positions: Tensor | None = None) -> HookFn:
    """Copy the activation (or its rows at `positions`) into `store[hook.name]`, leaving it unchanged."""

    def hook(x: Float[Tensor, "batch pos d_model"], hook) -> Tensor:
        if positions is None:
            store[hook.name] = x.detach().clone()
        else:
            store[hook.name] = x[_rows(x.shape[0], x.device), positions.to(x.device)].detach().clone()
        return x

    return hook
