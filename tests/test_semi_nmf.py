"""SemiNMF: properties, planted-dictionary recovery, parity with scikit-learn, bad input.

The recovery test compares with the package's own PCA and KMeans baselines (`lmm_concepts.PCA`, `.KMeans`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import DictionaryLearning, dict_learning

import lmm_concepts as lc
from lmm_concepts.dictionary.lasso import objective
from lmm_concepts.dictionary.planted import planted_dictionary
from lmm_concepts.dictionary.semi_nmf import SemiNMF

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    return planted_dictionary(400, 32, 6, 2, noise=0.05, seed=3)


@pytest.fixture(scope="module")
def fitted(planted):
    return SemiNMF(6, l1=0.1).fit(planted.Z)


def _mean_best_cosine(true: torch.Tensor, learned: torch.Tensor) -> float:
    learned = torch.nn.functional.normalize(torch.as_tensor(learned, dtype=torch.float64), dim=1)
    true = torch.nn.functional.normalize(true.double(), dim=1)
    return float((true @ learned.T).max(dim=1).values.mean())


# ---------------------------------------------------------------------------------------------- properties
def test_codes_non_negative_and_atoms_in_the_unit_ball(fitted, planted):
    V = fitted.encode(planted.Z)
    assert V.shape == (400, 6) and (V >= 0).all()
    assert (fitted.W_dec.norm(dim=1) <= 1 + 1e-6).all()
    assert fitted.W_dec.shape == (6, 32) and fitted.architecture == "semi_nmf"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("init", ["svd", "kmeans++", "random"])
def test_objective_never_increases(planted, dtype, init):
    model = SemiNMF(6, l1=0.1, init=init, dtype=dtype, tol=0.0, max_iter=40).fit(planted.Z)
    h = np.array(model.history_)
    # tol=0 runs until max_iter (a re-seed trial that did not help takes one of them without a history entry)
    # or until an iteration no longer lowers the objective at all
    assert (model.stop_reason_.startswith("max_iter") and len(h) >= 39) or model.stop_reason_.startswith("converged")
    assert len(h) >= 10
    # the exact objective never rises; in float32 its evaluation from the statistics A, B carries ~1e-6 rounding
    slack = 1e-12 if dtype == torch.float64 else 1e-5
    assert (np.diff(h) <= slack * h[:-1]).all(), np.diff(h).max()


def test_zero_data_gives_zero_codes(fitted):
    assert torch.equal(fitted.encode(torch.zeros(5, 32)), torch.zeros(5, 6))
    model = SemiNMF(3, l1=0.1).fit(torch.zeros(10, 4))
    assert torch.equal(model.encode(torch.zeros(10, 4)), torch.zeros(10, 3))
    assert model.objective_ == 0.0 and torch.isfinite(model.W_dec).all()


def test_one_more_concept_warm_started_never_fits_worse(planted):
    for K in (3, 5, 6):
        small = SemiNMF(K, l1=0.1).fit(planted.Z)
        bigger = SemiNMF(K + 1, l1=0.1).fit(planted.Z, init_W_dec=small.W_dec)
        assert bigger.objective_ <= small.objective_ * (1 + 1e-7)
        assert bigger.objective(planted.Z) <= small.objective(planted.Z) * (1 + 1e-7)


@pytest.mark.parametrize("init", ["svd", "kmeans++", "random"])
def test_same_seed_same_result(planted, init):
    a = SemiNMF(6, l1=0.1, init=init, seed=7).fit(planted.Z)
    b = SemiNMF(6, l1=0.1, init=init, seed=7).fit(planted.Z)
    assert torch.equal(a.W_dec, b.W_dec) and a.history_ == b.history_


def test_encode_of_training_data_reproduces_the_fitted_objective(fitted, planted):
    assert fitted.objective(planted.Z) <= fitted.objective_ * (1 + 1e-6)
    assert fitted.objective(planted.Z) == pytest.approx(fitted.objective_, rel=1e-4)
    assert fitted.stop_reason_.startswith("converged")


def test_numpy_float64_input_and_decode(planted):
    model = SemiNMF(6, l1=0.1, dtype=torch.float64).fit(planted.Z.double().numpy())
    V = model.encode(planted.Z.double().numpy())
    assert V.dtype == torch.float64 and model.W_dec.dtype == torch.float64
    assert model.decode(V).shape == (400, 32)
    assert objective(planted.Z.double(), V, model.W_dec, 0.1) == pytest.approx(model.objective_, rel=1e-6)


def test_runs_on_the_requested_device(planted, device):
    model = SemiNMF(6, l1=0.1, device=device).fit(planted.Z)
    assert model.W_dec.device.type == torch.device(device).type
    assert model.encode(planted.Z).device.type == torch.device(device).type


def test_public_exports():
    assert lc.SemiNMF is SemiNMF and lc.nonneg_lasso is not None


def test_reseeding_moves_are_kept_only_when_they_help():
    """After the first iteration and at plateaus the cheapest atom may move to the residual's direction; a move
    is kept only if the objective drops, so the path is the plain one up to the first proposal (after the first
    iteration) and never ends higher."""
    Z, _, _ = planted_dictionary(600, 24, 10, 3, noise=0.05, seed=4)
    plain = SemiNMF(10, l1=0.1, n_reseed=0).fit(Z)
    reseeded = SemiNMF(10, l1=0.1, n_reseed=5).fit(Z)
    assert reseeded.history_[:1] == plain.history_[:1]
    assert reseeded.objective_ <= plain.objective_
    h = np.array(reseeded.history_)
    assert (np.diff(h) <= 1e-6 * h[:-1]).all()
    assert "re-seeding" in reseeded.stop_reason_ and "re-seeding" not in plain.stop_reason_


# ---------------------------------------------------------------------------------------------- warm-up
@pytest.fixture(scope="module")
def planted_large():
    """Enough samples for the online warm-up (4 batches of 64)."""
    return planted_dictionary(1200, 24, 8, 2, noise=0.05, seed=6)


def test_warm_up_keeps_every_property_and_reaches_the_full_batch_objective(planted_large):
    Z = planted_large.Z
    warm = SemiNMF(8, l1=0.1, warmup_batch=64, seed=3).fit(Z)
    again = SemiNMF(8, l1=0.1, warmup_batch=64, seed=3).fit(Z)
    cold = SemiNMF(8, l1=0.1, warmup_epochs=0, seed=3).fit(Z)
    assert torch.equal(warm.W_dec, again.W_dec) and warm.history_ == again.history_
    assert (warm.W_dec.norm(dim=1) <= 1 + 1e-6).all() and (warm.encode(Z) >= 0).all()
    h = np.array(warm.history_)
    assert (np.diff(h) <= 1e-5 * h[:-1]).all()
    # the warm-up only shortens the way: the full-batch iterations end at the same objective
    assert warm.objective(Z) <= cold.objective(Z) * (1 + 1e-3)
    assert _mean_best_cosine(planted_large.W_dec, warm.W_dec) >= 0.95


def test_coarse_stage_on_a_subset_ends_where_the_plain_fit_does():
    Z = planted_dictionary(4200, 16, 5, 2, noise=0.05, seed=9).Z
    coarse = SemiNMF(5, l1=0.1, seed=2).fit(Z)  # 4,200 >= 4 x 1,024 rows: coarse stage on 1,024 of them
    again = SemiNMF(5, l1=0.1, seed=2).fit(Z)
    plain = SemiNMF(5, l1=0.1, seed=2, coarse_rows=0).fit(Z)
    assert torch.equal(coarse.W_dec, again.W_dec) and coarse.history_ == again.history_
    h = np.array(coarse.history_)
    assert (np.diff(h) <= 1e-5 * h[:-1]).all() and coarse.stop_reason_.startswith("converged")
    assert coarse.objective(Z) <= plain.objective(Z) * (1 + 1e-3)
    assert coarse.n_iter_ < plain.n_iter_


def test_a_given_start_is_refined_without_the_warm_up(planted_large):
    Z = planted_large.Z
    start = SemiNMF(8, l1=0.1, warmup_batch=64).fit(Z).W_dec
    given = SemiNMF(8, l1=0.1, warmup_batch=64, init=start).fit(Z)
    no_warm_up = SemiNMF(8, l1=0.1, warmup_epochs=0, init=start).fit(Z)
    assert given.history_ == no_warm_up.history_


def test_fit_transform_gives_the_codes_encode_gives(planted_large):
    Z = planted_large.Z
    model = SemiNMF(8, l1=0.1, warmup_batch=64)
    V = model.fit_transform(Z)
    assert V.shape == (1200, 8) and (V >= 0).all()
    assert objective(Z, V, model.W_dec, 0.1) == pytest.approx(model.objective(Z), rel=1e-5)


# ---------------------------------------------------------------------------------------------- recovery
def test_planted_dictionary_recovered_better_than_pca_and_kmeans():
    Z, W_true, _ = planted_dictionary(1500, 64, 8, 2, noise=0.05, seed=11)
    ours = _mean_best_cosine(W_true, SemiNMF(8, l1=0.2).fit(Z).W_dec)
    pca = _mean_best_cosine(W_true, lc.PCA(8).fit(Z).W_dec)
    km = _mean_best_cosine(W_true, lc.KMeans(8).fit(Z).W_dec)
    assert ours >= 0.95
    assert ours > pca and ours > km, (ours, pca, km)


# ---------------------------------------------------------------------------------------------- parity
def test_objective_within_0_1_percent_of_scikit_learn():
    Z, _, _ = planted_dictionary(300, 20, 5, 2, noise=0.05, seed=5, dtype=torch.float64)
    X = Z.numpy()
    sk = DictionaryLearning(
        n_components=5,
        alpha=0.1,
        positive_code=True,
        fit_algorithm="cd",
        transform_algorithm="lasso_cd",
        random_state=0,
    )
    code = sk.fit_transform(X)
    theirs = objective(Z, torch.from_numpy(code), torch.from_numpy(sk.components_), 0.1)
    model = SemiNMF(5, l1=0.1, dtype=torch.float64).fit(Z)
    assert model.objective_ <= 1.001 * theirs
    assert model.objective(Z) <= 1.001 * theirs


def test_objective_constants_are_scikit_learns():
    """scikit-learn's own cost (errors[-1] of dict_learning) is ½‖X − code·dictionary‖² + alpha·Σcode."""
    Z, _, _ = planted_dictionary(120, 10, 4, 2, seed=8, dtype=torch.float64)
    code, dictionary, errors = dict_learning(
        Z.numpy(), 4, alpha=0.3, method="cd", positive_code=True, random_state=0
    )
    ours = objective(Z, torch.from_numpy(code), torch.from_numpy(dictionary), 0.3)
    assert ours == pytest.approx(errors[-1], rel=1e-10)
    model = SemiNMF(4, l1=0.3, dtype=torch.float64, init=torch.from_numpy(dictionary), max_iter=1).fit(Z)
    V = model.encode(Z)
    assert model.objective(Z) == pytest.approx(objective(Z, V, model.W_dec, 0.3), rel=1e-12)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(fitted, planted):
    Z = planted.Z.clone()
    Z[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        SemiNMF(6).fit(Z)
    Z[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        fitted.encode(Z)
    with pytest.raises(ValueError, match="fewer than n_concepts"):
        SemiNMF(10).fit(planted.Z[:5])
    with pytest.raises(ValueError, match="fitted on d=32"):
        fitted.encode(planted.Z[:, :16])
    with pytest.raises(ValueError, match="2-D"):
        SemiNMF(3).fit(planted.Z[None])
    with pytest.raises(ValueError, match="l1 must be"):
        SemiNMF(3, l1=-0.5)
    with pytest.raises(RuntimeError, match="not fitted"):
        SemiNMF(3).encode(planted.Z)
    with pytest.raises(ValueError, match="init must be"):
        SemiNMF(3, init="pca")
    with pytest.raises(ValueError, match="initial W_dec"):
        SemiNMF(3).fit(planted.Z, init_W_dec=torch.ones(4, 32))
    with pytest.raises(TypeError, match="torch tensor or numpy"):
        SemiNMF(3).fit([[1.0, 2.0]] * 5)
