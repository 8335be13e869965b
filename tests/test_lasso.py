"""The pure Semi-NMF building blocks: non-negative lasso, dictionary step, objective, starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode

from lmm_concepts.dictionary.lasso import (
    init_kmeanspp,
    init_random,
    init_svd,
    nonneg_lasso,
    nonneg_lasso_gram,
    objective,
    objective_from_stats,
    reseed_atoms,
    update_dictionary,
)
from lmm_concepts.dictionary.planted import planted_dictionary

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    return planted_dictionary(300, 40, 12, 3, noise=0.05, seed=1, dtype=torch.float64)


def _perturbed(W, seed=2, eps=0.1):
    Wp = W + eps * torch.randn(W.shape, generator=torch.Generator().manual_seed(seed), dtype=W.dtype)
    return Wp / Wp.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("method", ["cd", "fista", "active_set"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nonneg_lasso_matches_sklearn_lasso_cd(planted, method, dtype, device):
    Z, W, _ = planted
    W = _perturbed(W)
    V = nonneg_lasso(Z.to(device, dtype), W.to(device, dtype), 0.2, method=method, tol=1e-6)
    assert V.dtype == dtype and V.device.type == torch.device(device).type
    assert (V >= 0).all()
    ref = sparse_encode(Z.numpy(), W.numpy(), algorithm="lasso_cd", alpha=0.2, positive=True, max_iter=5000)
    ours = objective(Z, V.cpu().double(), W, 0.2)
    theirs = objective(Z, torch.from_numpy(ref), W, 0.2)
    assert ours <= theirs * (1 + 1e-6)
    np.testing.assert_allclose(V.cpu().double().numpy(), ref, atol=1e-3 if dtype == torch.float32 else 1e-5)


def test_nonneg_lasso_zero_data_gives_zero_codes(planted):
    _, W, _ = planted
    V = nonneg_lasso(torch.zeros(7, W.shape[1], dtype=W.dtype), W, 0.5)
    assert torch.equal(V, torch.zeros(7, W.shape[0], dtype=W.dtype))


@pytest.mark.parametrize("method", ["cd", "fista", "active_set"])
def test_warm_start_never_worse_than_its_start(planted, method):
    Z, W, V_true = planted
    W = _perturbed(W)
    V = nonneg_lasso(Z, W, 0.2, V0=V_true, max_iter=1, method=method)
    G, C = W @ W.T, Z @ W.T
    rows = lambda V: (0.5 * (V @ G) - C + 0.2).mul(V).sum(1)  # noqa: E731
    assert (rows(V) <= rows(V_true) + 1e-9).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_active_set_matches_fista_at_k256(dtype, device):
    # the regime "auto" sends to the active-set solver: K = 256, sparse codes
    Z, W, _ = planted_dictionary(200, 96, 256, 8, noise=0.05, seed=3, dtype=dtype)
    Z, W = Z.to(device), W.to(device)
    V = nonneg_lasso(Z, W, 0.2, method="active_set", tol=1e-6)
    ref = nonneg_lasso(Z, W, 0.2, method="fista", tol=1e-7, max_iter=5000)
    assert (V >= 0).all() and V.dtype == dtype
    ours, theirs = (
        objective(Z.double(), V.double(), W.double(), 0.2),
        objective(Z.double(), ref.double(), W.double(), 0.2),
    )
    assert ours <= theirs * (1 + (1e-5 if dtype == torch.float32 else 1e-9))
    assert torch.equal(nonneg_lasso(Z, W, 0.2, tol=1e-6), V)  # "auto" picks it for a cold start at K > 64


def test_active_set_hands_dense_codes_over_to_fista():
    # a small penalty gives dense codes: the working sets outgrow `max_set` and FISTA finishes the solve
    Z, W, _ = planted_dictionary(150, 96, 256, 8, noise=0.05, seed=4, dtype=torch.float64)
    V = nonneg_lasso(Z, W, 0.01, method="active_set", tol=1e-7, max_iter=5000)
    ref = nonneg_lasso(Z, W, 0.01, method="fista", tol=1e-7, max_iter=5000)
    assert (V > 0).sum(dim=1).float().mean() > 32  # dense indeed
    assert objective(Z, V, W, 0.01) <= objective(Z, ref, W, 0.01) * (1 + 1e-7)


def test_active_set_falls_back_when_the_gram_matrix_is_singular(planted):
    Z, W, _ = planted
    W2 = torch.cat([W, W])  # every atom twice: the working-set systems are singular
    V = nonneg_lasso(Z, W2, 0.2, method="active_set", tol=1e-6)
    ref = nonneg_lasso(Z, W, 0.2, method="cd", tol=1e-6)
    assert (V >= 0).all()
    assert objective(Z, V, W2, 0.2) <= objective(Z, ref, W, 0.2) * (1 + 1e-6)


def test_nonneg_lasso_rejects_bad_arguments(planted):
    Z, W, _ = planted
    with pytest.raises(ValueError, match="l1 must be"):
        nonneg_lasso(Z, W, -1.0)
    with pytest.raises(ValueError, match="share d"):
        nonneg_lasso(Z[:, :5], W, 0.1)
    with pytest.raises(ValueError, match="method"):
        nonneg_lasso(Z, W, 0.1, method="lars")


def test_dictionary_step_is_the_constrained_minimiser_and_never_raises_the_objective(planted):
    Z, W_true, V = planted
    W = _perturbed(W_true, eps=0.5)
    A, B = V.T @ V, Z.T @ V
    before = objective(Z, V, W, 0.2)
    W_new, dead = update_dictionary(W, A, B, n_sweeps=3)
    assert not dead.any()
    assert (W_new.norm(dim=1) <= 1 + 1e-12).all()
    after = objective(Z, V, W_new, 0.2)
    assert after <= before
    # converged sweeps reach the constrained minimiser: no atom improves by moving it inside the ball
    W_new, _ = update_dictionary(W, A, B, n_sweeps=200)
    after = objective(Z, V, W_new, 0.2)
    for k in range(W.shape[0]):
        other = W_new.clone()
        other[k] = other[k] + 1e-3 * torch.randn(
            W.shape[1], dtype=W.dtype, generator=torch.Generator().manual_seed(k)
        )
        other[k] /= other[k].norm().clamp(min=1.0)
        assert objective(Z, V, other, 0.2) >= after - 1e-9


@pytest.mark.parametrize("block", [1, 5, 32])
def test_blocked_dictionary_step_takes_the_same_steps_as_atom_by_atom(planted, block):
    """The block GEMM plus rank-1 corrections is the same sequential block-coordinate sweep, so any block
    size gives the dictionary of the plain one-atom-at-a-time loop (written out here)."""
    Z, W_true, V = planted
    W = _perturbed(W_true, eps=0.5)
    A, B = V.T @ V, Z.T @ V
    W_ref = W.clone()
    for _ in range(2):
        for k in range(W.shape[0]):
            u = W_ref[k] + (B[:, k] - W_ref.T @ A[k]) / A[k, k]
            W_ref[k] = u / u.norm().clamp(min=1.0)
    W_new, _ = update_dictionary(W, A, B, n_sweeps=2, block=block)
    torch.testing.assert_close(W_new, W_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["fista", "active_set"])
def test_warm_start_without_safeguard_may_skip_the_comparison_but_still_solves(planted, method):
    Z, W_true, _ = planted
    W = _perturbed(W_true)
    V0 = nonneg_lasso(Z, W, 0.2, max_iter=2000, tol=1e-10, method="cd")
    G, C = W @ W.T, Z @ W.T
    V = nonneg_lasso_gram(C, G, 0.2, V0=V0 * 0.5, max_iter=2000, tol=1e-10, method=method, safeguard=False)
    assert (V >= 0).all()
    assert objective(Z, V, W, 0.2) == pytest.approx(objective(Z, V0, W, 0.2), rel=1e-9)


def test_dead_atoms_flagged_and_reseeded(planted):
    Z, W, V = planted
    V = V.clone()
    V[:, 3] = 0
    W_new, dead = update_dictionary(W, V.T @ V, Z.T @ V)
    assert dead.tolist() == [k == 3 for k in range(W.shape[0])]
    assert torch.equal(W_new[3], W[3])
    W_re = reseed_atoms(W_new, dead, torch.stack([torch.zeros(W.shape[1], dtype=W.dtype), 3 * Z[0]]))
    torch.testing.assert_close(W_re[3], Z[0] / Z[0].norm())
    assert torch.equal(W_re[:3], W_new[:3])


def test_objective_from_stats_equals_direct_objective(planted):
    Z, W, V = planted
    W = _perturbed(W)
    direct = objective(Z, V, W, 0.3)
    stats = objective_from_stats(W, V.T @ V, Z.T @ V, V.sum(), (Z * Z).sum(), 0.3)
    assert stats == pytest.approx(direct, rel=1e-12)
    # the constants: ½‖Z − VW‖² + l1·ΣV, written out by hand
    assert direct == pytest.approx(0.5 * float(((Z - V @ W) ** 2).sum()) + 0.3 * float(V.sum()), rel=1e-12)


@pytest.mark.parametrize("init", [init_svd, init_kmeanspp, init_random])
def test_starts_are_unit_norm_seeded_and_deterministic(planted, init):
    Z = planted.Z.float()
    a = init(Z, 12, generator=torch.Generator().manual_seed(5))
    b = init(Z, 12, generator=torch.Generator().manual_seed(5))
    assert a.shape == (12, Z.shape[1])
    assert torch.equal(a, b)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(12))


def test_svd_start_points_atoms_at_the_data_and_fills_beyond_the_rank(planted):
    Z = planted.Z
    U = init_svd(Z, 12)
    assert ((Z @ U.T).mean(0) > 0).all()
    _, _, Vh = torch.linalg.svd(Z, full_matrices=False)
    torch.testing.assert_close((U @ Vh[:12].T).abs().diagonal(), torch.ones(12, dtype=Z.dtype))
    U_over = init_svd(Z[:, :5], 8)  # rank 5 < 8 concepts
    assert U_over.shape == (8, 5) and torch.isfinite(U_over).all()
