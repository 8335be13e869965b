"""The baselines' defining properties, each against its reference (scikit-learn or the paper's code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SkKMeans
from sklearn.decomposition import NMF as SkNMF
from sklearn.decomposition import PCA as SkPCA
from sklearn.metrics.pairwise import euclidean_distances

import lmm_concepts as lc
from tests._dictionary_fixtures import LEARNERS, K, blobs, data_for, planted


# ----------------------------------------------------------------------------- PCA
@pytest.mark.parametrize("solver", ["full", "randomized"])
def test_pca_matches_sklearn_up_to_sign(solver):
    Z = planted().double()
    pca = lc.PCA(K, solver=solver, dtype=torch.float64).fit(Z)
    ref = SkPCA(n_components=K).fit(Z.numpy())
    W = pca.W_dec
    assert torch.allclose(W @ W.T, torch.eye(K, dtype=W.dtype), atol=1e-10)  # orthonormal axes
    signs = torch.sign((W * torch.from_numpy(ref.components_)).sum(1))
    assert torch.allclose(W * signs[:, None], torch.from_numpy(ref.components_), atol=1e-6)
    codes = pca.encode(Z)  # signed coordinates, as sklearn's transform
    assert (codes < 0).any() and (codes > 0).any()
    assert torch.allclose(codes * signs, torch.from_numpy(ref.transform(Z.numpy())), atol=1e-6)
    assert torch.allclose(
        pca.decode(codes), torch.from_numpy(ref.inverse_transform(ref.transform(Z.numpy()))), atol=1e-6
    )
    assert torch.allclose(pca.explained_variance, torch.from_numpy(ref.explained_variance_), rtol=1e-6)


def test_pca_refuses_more_axes_than_dimensions():
    with pytest.raises(ValueError, match="at most d=16 axes"):
        lc.PCA(17).fit(planted(n=40))


# ----------------------------------------------------------------------------- KMeans and Simple
@pytest.mark.parametrize("activation", ["inverse_distance", "distance"])
def test_kmeans_codes_are_the_paper_activation(activation):
    Z = blobs()
    km = lc.KMeans(K, activation=activation, seed=3).fit(Z)
    dist = torch.from_numpy(euclidean_distances(Z.numpy(), km.W_dec.numpy())).float()
    expected = 1 / (1 + dist) if activation == "inverse_distance" else dist
    assert torch.allclose(km.encode(Z), expected, atol=1e-4)
    # decode maps a code to its nearest centre
    assert torch.equal(km.decode(km.encode(Z)), km.W_dec[dist.argmin(1)])


def test_kmeans_is_a_lloyd_fixed_point_as_good_as_sklearn():
    Z = blobs()
    km = lc.KMeans(K, seed=0).fit(Z)
    labels = torch.cdist(Z, km.W_dec).argmin(1)
    for k in range(K):  # every centre is the mean of its cluster
        assert torch.allclose(km.W_dec[k], Z[labels == k].mean(0), atol=1e-4)
    ref = SkKMeans(n_clusters=K, n_init=1, random_state=0).fit(Z.numpy())
    assert km.inertia_ <= 1.001 * ref.inertia_
    again = lc.KMeans(K, seed=0).fit(Z)
    assert torch.equal(again.W_dec, km.W_dec)  # one seed, one result


def test_simple_takes_the_largest_norm_samples():
    Z = planted()
    simple = lc.Simple(K).fit(Z)
    norms = Z.norm(dim=1)
    top = np.argsort(norms.numpy())[-K:][::-1]  # the reference code: norms.argsort()[-K:]
    assert torch.equal(simple.W_dec, Z[torch.from_numpy(top.copy())])
    assert simple.W_dec.norm(dim=1).min() >= norms.sort(descending=True).values[K - 1]
    # codes: 1/(1 + distance to those samples), as the reference code's KMeans.transform
    dist = torch.from_numpy(euclidean_distances(Z.numpy(), simple.W_dec.numpy())).float()
    assert torch.allclose(simple.encode(Z), 1 / (1 + dist), atol=1e-4)
    assert torch.allclose(simple.encode(Z)[simple.indices_, torch.arange(K)], torch.ones(K), atol=1e-3)


# ----------------------------------------------------------------------------- NMF
def test_nmf_refuses_signed_data_and_points_to_semi_nmf():
    with pytest.raises(ValueError, match=r"negative entries.*SemiNMF"):
        lc.NMF(K).fit(planted())


def test_nmf_factors_are_nonnegative_and_fit_as_well_as_sklearn():
    Z = planted().abs().double()
    nmf = lc.NMF(K, max_iter=400, tol=1e-7, dtype=torch.float64).fit(Z)
    assert (nmf.W_dec >= 0).all() and torch.allclose(
        nmf.W_dec.norm(dim=1), torch.ones(K, dtype=torch.float64)
    )
    V = nmf.encode(Z)
    assert (V >= 0).all()
    history = torch.tensor(nmf.objective_history_)
    assert (history[1:] <= history[:-1] * (1 + 1e-9)).all()  # HALS never increases the objective
    ref = SkNMF(K, init="nndsvda", max_iter=2000, tol=1e-7, random_state=0).fit(Z.numpy())
    ref_obj = 0.5 * ref.reconstruction_err_**2
    assert nmf.objective(Z) <= 1.02 * ref_obj


# ----------------------------------------------------------------------------- random
def test_random_dictionary_is_seeded_unit_directions_with_lasso_codes():
    Z = planted()
    rd = lc.RandomDictionary(K, l1=0.2, seed=4).fit(Z)
    assert torch.allclose(rd.W_dec.norm(dim=1), torch.ones(K))
    assert torch.equal(lc.RandomDictionary(K, seed=4).fit(Z).W_dec, rd.W_dec)
    assert not torch.equal(lc.RandomDictionary(K, seed=5).fit(Z).W_dec, rd.W_dec)
    V = rd.encode(Z)
    assert torch.equal(V, lc.nonneg_lasso(Z, rd.W_dec, 0.2, max_iter=1000, tol=1e-5))


# ----------------------------------------------------------------------------- SAE trained by sae-lens
@pytest.mark.parametrize("kind", ["standard", "topk"])
def test_sae_dictionary_trains_with_sae_lens_deterministically(kind):
    Z = planted()
    make = LEARNERS[f"sae_{kind}"]
    sae = make().fit(Z)
    assert type(sae.sae).__name__ == {"standard": "StandardSAE", "topk": "TopKSAE"}[kind]
    V = sae.encode(Z)
    assert V.shape == (Z.shape[0], K) and (V >= 0).all()
    if kind == "topk":
        assert ((V > 0).sum(1) <= 2).all()
    err = (sae.decode(V) - Z).pow(2).sum() / (Z - Z.mean(0)).pow(2).sum()
    assert err < 0.5  # it learned the planted structure, at least in part
    torch.manual_seed(123)  # the caller's RNG state does not matter, only the seed
    assert torch.equal(make().fit(Z).W_dec, sae.W_dec)


# ----------------------------------------------------------------------------- shared bad input
@pytest.mark.parametrize("name", ["pca", "kmeans", "simple", "nmf", "random"])
def test_bad_input_is_named(name):
    learner = LEARNERS[name]()
    Z = data_for(name)
    with pytest.raises(RuntimeError, match="not fitted"):
        learner.encode(Z)
    with pytest.raises(ValueError, match="fewer than n_concepts"):
        learner.fit(Z[:3])
    bad = Z.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        learner.fit(bad)
    learner.fit(Z)
    with pytest.raises(ValueError, match="d=15 but the dictionary was fitted on d=16"):
        learner.encode(Z[:, :15])
