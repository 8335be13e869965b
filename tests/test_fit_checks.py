"""Every learner checks its result once, in the base class, and handles data of extreme scale (issue 15, item 4)."""

from __future__ import annotations

import warnings

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.dictionary.base import ConceptDictionary, FitError
from tests._dictionary_fixtures import LEARNERS, data_for

pytestmark = pytest.mark.usefixtures("one_thread")

#: per learner: (W_dec of c·Z) = c**power · (W_dec of Z); codes of c·Z = c · codes of Z (prototypes: distances)
PROTOTYPES = {"kmeans", "kmeans_distance", "simple"}
SCALE_FREE = {
    "semi_nmf": lambda: lc.SemiNMF(5, l1=0.2, max_iter=50),
    "online": lambda: lc.OnlineSemiNMF(5, l1=0.2, batch_size=60),
    "pca": lambda: lc.PCA(5),
    "kmeans_distance": lambda: lc.KMeans(5, activation="distance"),
    "simple": lambda: lc.Simple(5, activation="distance"),
    "nmf": lambda: lc.NMF(5, l1=0.1, max_iter=100),
    "random": lambda: lc.RandomDictionary(5, l1=0.2),
}


def _scaled(make, c: float):
    learner = make()
    if isinstance(getattr(learner, "l1", None), float):
        learner.l1 *= c  # the same problem in the units of c·Z
        if hasattr(learner, "config"):
            learner.config.l1 = learner.l1
    return learner


@pytest.mark.parametrize("c", [1e18, 1e-18])
@pytest.mark.parametrize("name", sorted(SCALE_FREE))
def test_extreme_scales_give_the_same_dictionary_up_to_the_scaling(name, c):
    Z = data_for("nmf" if name == "nmf" else "semi_nmf")
    a = SCALE_FREE[name]().fit(Z)
    b = _scaled(SCALE_FREE[name], c).fit(Z * c)
    atoms = b.W_dec.double() / (c if name in PROTOTYPES else 1.0)
    assert torch.isfinite(b.W_dec).all()
    assert torch.allclose(atoms, a.W_dec.double(), rtol=1e-4, atol=1e-5)
    codes = b.encode(Z * c).double() / c
    assert torch.allclose(codes, a.encode(Z).double(), rtol=1e-4, atol=1e-5 * float(a.encode(Z).abs().max()))


@pytest.mark.parametrize("c", [1e18, 1e-18])
def test_an_sae_trained_at_extreme_scale_reconstructs_as_at_unit_scale(c):
    Z = data_for("sae_topk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = LEARNERS["sae_topk"]().fit(Z)
        b = LEARNERS["sae_topk"]().fit(Z * c)

    def error(model, X):
        V = model.encode(X)
        return float((model.decode(V).double() - X.double()).norm() / X.double().norm())

    assert torch.isfinite(b.W_dec).all()
    assert error(b, Z * c) == pytest.approx(error(a, Z), rel=1e-3)


def test_the_issue_15_inputs_fit_or_fail_clearly():
    g = torch.Generator().manual_seed(0)
    huge = torch.randn(200, 32, generator=g) * 1e19
    spike = torch.randn(200, 32, generator=g)
    spike[3, 5] = 1e30
    for Z in (huge, spike, torch.randn(200, 32, generator=g) * 1e18):
        for make in (lambda: lc.SemiNMF(4, max_iter=50), lambda: lc.KMeans(4), lambda: lc.OnlineSemiNMF(4)):
            model = make().fit(Z)  # the check inside fit raises FitError on a broken result
            assert torch.isfinite(model.W_dec).all() and torch.isfinite(model.encode(Z)).all()
    model = lc.SemiNMF(4, max_iter=50).fit(huge)
    assert (model.W_dec.norm(dim=1) <= 1 + 1e-5).all()
    assert model.objective(huge) == pytest.approx(model.objective_, rel=1e-3)


class _Broken(ConceptDictionary):
    """A learner whose fit returns whatever `result` says: the base class must catch it."""

    architecture = "semi_nmf"
    max_atom_norm = 1.0

    def __init__(self, result: str):
        super().__init__(3)
        self.result = result

    def fit(self, Z):
        W = torch.nn.functional.normalize(torch.ones(3, Z.shape[1]), dim=1)
        if self.result == "nan":
            W[1, 0] = float("nan")
        if self.result == "long":
            W[2] *= 1.5
        if self.result == "rising":
            self.history_, self.stop_reason_ = [3.0, 2.0, 2.5], "converged: relative decrease -2.5e-01"
        self.W_dec = W
        return self

    def encode(self, Z):
        V = torch.as_tensor(Z) @ self.W_dec.T
        return -V.abs() if self.result == "negative" else V.abs()


@pytest.mark.parametrize(
    ("result", "message"),
    [("nan", "NaN or inf in 1 of 3"), ("long", "norm 1.5"), ("negative", "negative codes"), ("rising", "rose")],
)
def test_a_broken_result_is_a_fit_error(result, message):
    with pytest.raises(FitError, match=message):
        _Broken(result).fit(torch.randn(10, 4))
    _Broken("fine").fit(torch.randn(10, 4))


def test_a_learner_that_cannot_rescale_refuses_extreme_data_clearly():
    with pytest.raises(ValueError, match="divide Z by a constant first"):
        _Broken("fine").fit(torch.randn(10, 4) * 1e30)
