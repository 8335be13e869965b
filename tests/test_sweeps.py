"""k_sweep and layer_sweep: one row per point, saved as they finish, resumed from disk."""

from __future__ import annotations

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.metrics.sweeps import SweepResults
from lmm_concepts.models.interface import FINAL_HOOK
from tests._ground_fixtures import MemoryStore, concept_vectors, plant_unembedding, planted_store, tiny_model


@pytest.fixture(scope="module")
def world():
    model = tiny_model()
    U = concept_vectors()
    plant_unembedding(model, U)
    train, _ = planted_store(U, n_per_concept=8, seed=2)
    test, _ = planted_store(U, n_per_concept=3, seed=5)
    return model, train, test


def test_k_sweep_reconstruction_improves_with_k_and_resumes(world, tmp_path):
    model, train, test = world
    def semi_nmf(K, seed=0):
        return lc.SemiNMF(K, l1=0.01, max_iter=100, init="random", seed=seed)

    res = lc.k_sweep(model, train, test, [1, 3], semi_nmf, n_words=4, out=tmp_path, n_seeds=2, progress=False)
    assert res.column("k") == [1, 3]
    err = res.column("train/relative_error")
    assert err[1] < err[0] and err[1] < 0.2  # three planted concepts: K=3 fits them up to the noise
    assert all(v is not None for v in res.column("overlap"))
    assert 0.9 < res.column("seed_stability")[1] <= 1.0 + 1e-6  # planted concepts are found from any start
    assert (tmp_path / "k=3" / "explanations" / "explanations.json").is_file()
    assert SweepResults.load(tmp_path).rows == res.rows and "| k |" in (tmp_path / "sweep.md").read_text()

    def refuse(K):
        raise AssertionError("a finished point was fitted again")

    assert lc.k_sweep(model, train, test, [1, 3], refuse, out=tmp_path, progress=False).rows == res.rows


def test_layer_sweep_uses_each_layers_lens(world, tmp_path):
    model, train, test = world
    Z = train.layer("final")
    two = MemoryStore({"blocks.1.hook_resid_post": 2 * Z, FINAL_HOOK: Z})
    res = lc.layer_sweep(model, two, two, ["blocks.1.hook_resid_post", "final"], lambda: lc.SemiNMF(3, l1=0.01, max_iter=100),
                         n_words=4, out=tmp_path, progress=False)
    assert res.column("layer") == ["blocks.1.hook_resid_post", FINAL_HOOK]
    lenses = [lc.Explanations.load(tmp_path / f"layer={n}" / "explanations").lens for n in res.column("layer")]
    assert lenses == ["ln_final", "raw"]


def test_sweep_bad_input(world):
    model, train, test = world
    with pytest.raises(ValueError, match="ks is empty"):
        lc.k_sweep(model, train, test, [], lambda K: lc.SemiNMF(K))
    with pytest.raises(ValueError, match="token=... and out=..."):
        lc.layer_sweep(model, [("img", ["cap"])], test, [0], lambda: lc.SemiNMF(3))
    with pytest.raises(ValueError, match="no layer"):
        lc.layer_sweep(model, train, test, ["blocks.0.hook_resid_post"], lambda: lc.SemiNMF(3))
    assert torch.is_tensor(train.layer("final"))
