"""Gradients through non-negative lasso codes, by implicit differentiation of the solution on its support.

Notation (docs/design.md): z [d] one sample, W_dec [K, d] the concepts as rows, G = W_dec·W_decᵀ [K, K], codes
v = argmin_{v ≥ 0} ½‖z − v·W_dec‖² + l1·Σv. On the support S = {k : v_k > 0} the KKT conditions are equalities,
G_SS·v_S = W_S·z − l1, and v is 0 outside S. Wherever S does not change under a small move of z or W_dec (almost
everywhere: S changes only where some v_k or its gradient slack crosses 0), v is therefore the smooth function

    v_S = G_SS⁻¹·(W_S·z − l1),   v_{not S} = 0.

With an upstream gradient g = ∂L/∂v and q the solution of G_SS·q_S = g_S (q = 0 outside S), the chain rule gives

    ∂L/∂z     = q·W_dec                              (only the active concepts' directions)
    ∂L/∂W_dec = Σ_rows qᵀ·r − vᵀ·(q·W_dec),  r = z − v·W_dec the residual

(the second from d(G_SS)·v_S + G_SS·dv_S = dW_S·z with dG = dW·Wᵀ + W·dWᵀ). Both are a few GEMMs and one small
solve per sample on its support; the forward pass is the solver itself, unchanged and without autograd. Where S
changes (a code exactly at 0 with a zero slack) the codes are not differentiable; this returns the one-sided
derivative that keeps S. No gradient reaches `l1` (a float).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from torch.autograd.function import once_differentiable

from lmm_concepts.dictionary.lasso import LassoMethod, nonneg_lasso

#: the backward pass solves G_SS for at most this many matrix entries at a time ([rows, m, m], m the largest
#: support in the block), so memory stays bounded for large batches
SOLVE_BLOCK_ENTRIES = 2**22

Solver = Callable[[Tensor, Tensor], Tensor]


def lasso_codes(
    Z: Float[Tensor, "n d"],
    W_dec: Float[Tensor, "K d"],
    l1: float,
    *,
    max_iter: int = 500,
    tol: float = 1e-4,
    method: LassoMethod = "auto",
) -> Float[Tensor, "n K"]:
    """`nonneg_lasso(Z, W_dec, l1, ...)`, differentiable with respect to Z and W_dec (see the module docstring).

    When autograd is off, or neither Z nor W_dec requires a gradient, this is exactly the solver's call: nothing
    is recorded or kept. Otherwise the forward pass is the same call without autograd, and the backward pass costs
    one small solve per sample on its support.
    """

    def solve(Z_: Tensor, W_: Tensor) -> Tensor:
        return nonneg_lasso(Z_, W_, l1, max_iter=max_iter, tol=tol, method=method)

    if not (torch.is_grad_enabled() and (Z.requires_grad or W_dec.requires_grad)):
        with torch.no_grad():
            return solve(Z, W_dec)
    return _LassoCodes.apply(Z, W_dec, solve)


class _LassoCodes(torch.autograd.Function):
    """V = solve(Z, W_dec) forward; backward by the implicit function theorem on each sample's support."""

    @staticmethod
    def forward(ctx: Any, Z: Tensor, W_dec: Tensor, solve: Solver) -> Tensor:
        with torch.no_grad():
            V = solve(Z, W_dec)
        ctx.save_for_backward(Z, W_dec, V)
        return V

    @staticmethod
    @once_differentiable  # second derivatives are not provided
    def backward(ctx: Any, grad_V: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        Z, W_dec, V = ctx.saved_tensors
        W = W_dec.to(V)
        Q = support_solve(W @ W.T, grad_V.to(V), V > 0)
        QW = Q @ W
        grad_Z = QW.to(Z.dtype) if ctx.needs_input_grad[0] else None
        grad_W = None
        if ctx.needs_input_grad[1]:
            R = Z.to(V) - V @ W
            grad_W = (Q.T @ R - V.T @ QW).to(W_dec.dtype)
        return grad_Z, grad_W, None


def support_solve(
    G: Float[Tensor, "K K"], rhs: Float[Tensor, "n K"], active: Bool[Tensor, "n K"]
) -> Float[Tensor, "n K"]:
    """Q with G_SS·q_S = rhs_S on each row's support S = active[i] and q = 0 outside it.

    Each row's support is gathered into a [m, m] system (m the largest support of the block, the rest padded
    with the identity) and solved by Cholesky, in blocks of rows of at most `SOLVE_BLOCK_ENTRIES` entries. A
    singular G_SS (repeated atoms both active: the codes themselves are not unique there) gets the minimum-norm
    solution of its least-squares problem instead.
    """
    n, K = rhs.shape
    Q = torch.zeros_like(rhs)
    m = int(active.sum(dim=1).max().item()) if n else 0  # the largest support
    if m == 0:
        return Q
    # the support's indices first (a stable sort keeps them in order), padding after them
    order = torch.argsort(active.to(torch.int8), dim=1, descending=True, stable=True)[:, :m]
    valid = active.gather(1, order)
    eye = torch.eye(m, dtype=rhs.dtype, device=rhs.device)
    step = max(1, SOLVE_BLOCK_ENTRIES // (m * m))
    for start in range(0, n, step):
        idx, ok = order[start : start + step], valid[start : start + step]
        w = ok.to(rhs.dtype)
        A = G.flatten().take(idx[:, :, None] * K + idx[:, None, :]) * (w[:, :, None] * w[:, None, :])
        A = A + eye * (1 - w)[:, :, None]
        b = (rhs[start : start + step].gather(1, idx) * w).unsqueeze(-1)
        L, info = torch.linalg.cholesky_ex(A)
        q = torch.cholesky_solve(b, L)
        singular = info != 0
        if bool(singular.any()):
            q[singular] = torch.linalg.pinv(A[singular], hermitian=True) @ b[singular]
        Q[start : start + step].scatter_(1, idx, q.squeeze(-1) * w)
    return Q


__all__ = ["lasso_codes", "support_solve"]
