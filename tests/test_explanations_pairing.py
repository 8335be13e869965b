"""Explanations are paired with the dictionary they were grounded from, and only with it: another fit of the same
shape is refused wherever codes would be read as these concepts (load, explain, evaluate, faithfulness)."""

from __future__ import annotations

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.grounding.explanations import check_pairing
from tests._ground_fixtures import HandDictionary, concept_vectors, planted_world


@pytest.fixture(scope="module")
def grounded(tmp_path_factory):
    model, U, store, _ = planted_world()
    expl = lc.ground(model, HandDictionary(U), store, n_words=4)
    path = expl.save(tmp_path_factory.mktemp("expl") / "e")
    return U, store, expl, path


def others(U):
    """Dictionaries of the same shape that are not the one grounded: rows reordered, a sign flipped, another fit."""
    flipped = U.clone()
    flipped[1] = -flipped[1]
    return {"reordered": U[[1, 0, 2]], "sign": flipped, "refit": concept_vectors(seed=7)}


def test_load_accepts_the_same_dictionary_to_float32_rounding(grounded):
    U, _, _, path = grounded
    assert lc.Explanations.load(path, dictionary=HandDictionary(U)).dictionary is not None
    # a float64 copy (or one moved between devices) is the same dictionary
    back = lc.Explanations.load(path, dictionary=HandDictionary(U.double()))
    assert back.paired() is back.dictionary


@pytest.mark.parametrize("kind", ["reordered", "sign", "refit"])
def test_another_fit_of_the_same_shape_is_refused_everywhere(grounded, kind):
    U, store, expl, path = grounded
    wrong = HandDictionary(others(U)[kind])
    with pytest.raises(ValueError, match="another fit.*Pass the dictionary the explanations were made from"):
        lc.Explanations.load(path, dictionary=wrong)
    with pytest.raises(ValueError, match="another fit"):
        lc.explain(expl, store.sample_ids[0], store=store, dictionary=wrong)
    with pytest.raises(ValueError, match="another fit"):
        lc.evaluate(expl, store, metrics=["quality"], dictionary=wrong)
    # the explanations' own dictionary still works
    assert lc.explain(expl, store.sample_ids[0], store=store).concepts


def test_pairing_errors_name_the_problem(grounded):
    U, _, expl, path = grounded
    with pytest.raises(ValueError, match=r"W_dec \(2, 16\) but these explanations were grounded from \(3, 16\)"):
        lc.Explanations.load(path, dictionary=HandDictionary(U[:2]))
    with pytest.raises(ValueError, match=r"rows \[1\] of 3"):
        check_pairing(U, HandDictionary(torch.cat([U[:1], U[1:2] + 1e-3, U[2:]])))
    check_pairing(U, HandDictionary(U + 1e-7))  # float32 rounding pairs
    unfitted = HandDictionary(U)
    unfitted.W_dec = None
    with pytest.raises(RuntimeError, match="not fitted"):
        check_pairing(U, unfitted)
    kept = lc.Explanations(**{**expl.__dict__, "dictionary": None})
    assert kept.paired() is None
    with pytest.raises(ValueError, match="explain needs the fitted dictionary"):
        kept.paired(needed_for="explain")
