"""Gradients through non-negative lasso codes (`lasso_grad.py`): exact against finite differences away from support
changes, the same codes as the solver, free when no gradient is asked for, and through sae-lens's hooked path."""

from __future__ import annotations

import pytest
import torch
from sae_lens import HookedSAETransformer
from transformer_lens import HookedTransformerConfig

import lmm_concepts as lc
from lmm_concepts.dictionary import lasso_grad
from lmm_concepts.dictionary.lasso import nonneg_lasso
from lmm_concepts.dictionary.lasso_grad import lasso_codes, support_solve

pytestmark = pytest.mark.usefixtures("one_thread")

L1 = 0.3
TIGHT = {"max_iter": 100_000, "tol": 1e-14}  # codes exact to ~1e-15, far below the finite-difference step


def problem(n: int = 5, d: int = 10, K: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 data Z [n, d] made of ~half the K unit concepts W_dec [K, d] with non-negative weights, plus noise."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(K, d, generator=g, dtype=torch.float64)
    W = W / W.norm(dim=1, keepdim=True)
    weights = 3 * torch.rand(n, K, generator=g, dtype=torch.float64) * (torch.rand(n, K, generator=g) < 0.5)
    return weights @ W + 0.1 * torch.randn(n, d, generator=g, dtype=torch.float64), W


def support_margin(Z: torch.Tensor, W: torch.Tensor, V: torch.Tensor) -> float:
    """How far the codes are from a support change: the smallest active code and the smallest KKT slack
    (∂f/∂v_k = (V·G − Z·Wᵀ + l1)_k > 0) of an inactive one."""
    slack = V @ (W @ W.T) - Z @ W.T + L1
    return min(V[V > 0].min().item(), slack[V == 0].min().item())


@pytest.mark.parametrize("method", ["cd", "fista", "active_set"])
def test_gradients_match_finite_differences_for_z_and_w_dec(method):
    Z, W = problem()
    V = lasso_codes(Z, W, L1, method=method, **TIGHT)
    assert support_margin(Z, W, V) > 1e-2  # a step of 1e-6 cannot change the support
    assert 0 < (V > 0).sum() < V.numel()  # some codes active, some not: the support matters

    def codes(Z_, W_):
        return lasso_codes(Z_, W_, L1, method=method, **TIGHT)

    inputs = (Z.clone().requires_grad_(), W.clone().requires_grad_())
    assert torch.autograd.gradcheck(codes, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_of_a_scalar_matches_a_central_difference():
    """A hand check of one directional derivative each for Z and W_dec (the figure the README quotes)."""
    Z, W = problem(n=8, d=12, K=7, seed=1)
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(8, 7, generator=g, dtype=torch.float64)
    dZ, dW = (
        torch.randn(Z.shape, generator=g, dtype=torch.float64),
        torch.randn(W.shape, generator=g, dtype=torch.float64),
    )

    def loss(Z_, W_):
        return (lasso_codes(Z_, W_, L1, **TIGHT) * weight).sum()

    Zr, Wr = Z.clone().requires_grad_(), W.clone().requires_grad_()
    loss(Zr, Wr).backward()
    h = 1e-6
    fd_Z = (loss(Z + h * dZ, W) - loss(Z - h * dZ, W)) / (2 * h)
    fd_W = (loss(Z, W + h * dW) - loss(Z, W - h * dW)) / (2 * h)
    assert abs((Zr.grad * dZ).sum() - fd_Z) <= 1e-7 * max(1.0, abs(fd_Z))
    assert abs((Wr.grad * dW).sum() - fd_W) <= 1e-7 * max(1.0, abs(fd_W))


def test_codes_are_the_solvers_codes_bit_for_bit():
    Z, W = problem(n=30)
    plain = nonneg_lasso(Z, W, L1)
    traced = lasso_codes(Z.clone().requires_grad_(), W, L1)
    assert traced.requires_grad and torch.equal(traced.detach(), plain)
    assert torch.equal(lasso_codes(Z, W, L1), plain)


def test_no_gradient_asked_records_and_solves_nothing_extra(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the backward machinery ran without a gradient being asked for")

    monkeypatch.setattr(lasso_grad._LassoCodes, "apply", refuse)
    monkeypatch.setattr(lasso_grad, "support_solve", refuse)
    Z, W = problem()
    Zr = Z.clone().requires_grad_()
    for V in (lasso_codes(Z, W, L1), lasso_codes(Z, W.clone().requires_grad_(False), L1)):
        assert V.grad_fn is None and not V.requires_grad
    with torch.no_grad():
        V = lasso_codes(Zr, W.clone().requires_grad_(), L1)
    assert V.grad_fn is None and not V.requires_grad


def test_the_forward_pass_never_solves_the_support_system(monkeypatch):
    calls = []
    real = lasso_grad.support_solve
    monkeypatch.setattr(lasso_grad, "support_solve", lambda *a: calls.append(1) or real(*a))
    Z, W = problem()
    V = lasso_codes(Z.clone().requires_grad_(), W, L1)
    assert calls == []
    V.sum().backward()
    assert calls == [1]


def test_support_solve_handles_empty_supports_singular_blocks_and_row_blocks(monkeypatch):
    Z, W = problem(n=40)
    W = torch.cat([W, W[:1]])  # a repeated atom: G_SS singular where both copies are active
    G = W @ W.T
    active = torch.rand(40, 7, generator=torch.Generator().manual_seed(3)) < 0.5
    active[0] = False  # an empty support: q = 0
    active[1, :] = False
    active[1, [0, 6]] = True  # both copies of the repeated atom
    rhs = torch.randn(40, 7, dtype=torch.float64)
    monkeypatch.setattr(lasso_grad, "SOLVE_BLOCK_ENTRIES", 50)  # several blocks of rows
    Q = support_solve(G, rhs, active)
    assert torch.all(Q[~active] == 0) and torch.all(Q[0] == 0)
    for i in range(2, 40):  # non-singular rows: the exact solve
        S = active[i].nonzero().flatten()
        if S.numel() and not {0, 6} <= set(S.tolist()):
            assert torch.allclose(Q[i, S], torch.linalg.solve(G[S][:, S], rhs[i, S]))
    S = torch.tensor([0, 6])  # the singular row: the minimum-norm least-squares solution
    assert torch.allclose(Q[1, S], torch.linalg.pinv(G[S][:, S]) @ rhs[1, S])


def test_learner_encode_is_differentiable_with_batch_rows_independent():
    Z, W = problem(n=12)
    dico = lc.SemiNMF(6, l1=L1, dtype=torch.float64, encode_max_iter=100_000, encode_tol=1e-14).fit(Z)
    Zr = Z.clone().requires_grad_()
    V = dico.encode(Zr)
    assert torch.equal(V.detach(), dico.encode(Z))
    upstream = torch.randn_like(V)
    (grad,) = torch.autograd.grad(V, Zr, upstream)
    # row by row: the same gradient (rows are independent problems), equal to q·W_dec with G_SS·q_S = g_S
    for i in range(3):
        zi = Z[i : i + 1].clone().requires_grad_()
        (gi,) = torch.autograd.grad(dico.encode(zi), zi, upstream[i : i + 1])
        assert torch.allclose(gi, grad[i : i + 1], atol=1e-12)
        S = (V[i] > 0).nonzero().flatten()
        q = torch.linalg.solve(dico.W_dec[S] @ dico.W_dec[S].T, upstream[i, S])
        assert torch.allclose(grad[i], q @ dico.W_dec[S], atol=1e-10)


HOOK = "blocks.0.hook_resid_post"


def test_gradients_reach_the_residual_stream_through_an_attached_sae():
    """HookedSAETransformer + add_sae(use_error_term=True): the logits are unchanged and the gradient reaching the
    residual before the SAE is the SAE output's gradient projected on the span of each position's active concepts
    (before, codes under no_grad left it at exactly 0)."""
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=16,
        d_head=8,
        n_heads=2,
        d_mlp=32,
        d_vocab=40,
        n_ctx=12,
        act_fn="gelu",
        seed=0,
        dtype=torch.float64,
    )
    model = HookedSAETransformer(cfg)
    tokens = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
    Z = cache[HOOK].reshape(-1, 16)
    dico = lc.SemiNMF(
        6, l1=0.2, max_iter=50, dtype=torch.float64, encode_tol=1e-12, encode_max_iter=10_000
    ).fit(Z)
    model.add_sae(dico.to_sae(HOOK), use_error_term=True)
    kept = {}

    def keep(tensor, hook):
        tensor.retain_grad()
        kept[hook.name] = tensor
        return tensor

    names = [f"{HOOK}.hook_sae_input", f"{HOOK}.hook_sae_acts_post", f"{HOOK}.hook_sae_output"]
    logits = model.run_with_hooks(tokens, fwd_hooks=[(n, keep) for n in names])
    assert torch.allclose(logits, clean, atol=1e-10)
    logits[:, -1, 7].sum().backward()
    x, acts, out = (kept[n] for n in names)
    assert x.grad is not None and acts.grad is not None
    assert x.grad.abs().max() > 0
    W_dec = dico.W_dec
    assert torch.allclose(acts.grad, out.grad @ W_dec.T, atol=1e-10)  # the decoder is linear
    V = acts.detach().reshape(-1, 6)
    for row, (g_out, g_x) in enumerate(zip(out.grad.reshape(-1, 16), x.grad.reshape(-1, 16), strict=True)):
        S = (V[row] > 0).nonzero().flatten()
        W_S = W_dec[S]
        projected = (
            g_out @ W_S.T @ torch.linalg.solve(W_S @ W_S.T, W_S) if S.numel() else torch.zeros_like(g_out)
        )
        assert torch.allclose(g_x, projected, atol=1e-9)


def test_the_training_sae_keeps_its_codes_out_of_the_graph():
    """Training steps W_dec on the fixed-code loss (the envelope theorem); its codes stay constants."""
    from lmm_concepts.dictionary.saes import SemiNMFTrainingSAE, SemiNMFTrainingSAEConfig

    sae = SemiNMFTrainingSAE(SemiNMFTrainingSAEConfig(d_in=10, d_sae=6, l1=L1, init="none"))
    x = problem()[0].float().requires_grad_()
    acts, _ = sae.encode_with_hidden_pre(x)
    assert not acts.requires_grad
