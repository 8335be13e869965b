"""Grounding: logit-lens words, the word filter, the two lenses, MAS, explain, save/load."""

from __future__ import annotations

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.grounding import Explanations, WordFilter, lens_logits, top_words
from lmm_concepts.models.interface import FINAL_HOOK
from tests._ground_fixtures import (
    PLANTED,
    HandDictionary,
    concept_vectors,
    planted_store,
    planted_world,
    tiny_model,
)


@pytest.fixture(scope="module")
def planted():
    return planted_world()


def test_planted_unembedding_grounds_planted_words(planted):
    model, U, store, labels = planted
    expl = lc.ground(model, HandDictionary(U), store, n_words=4, n_images=3)
    assert expl.lens == "raw"  # store layer "final": the bare unembedding is exact
    for k, words in PLANTED.items():
        assert expl[k].words == words  # in rank order of the planted strengths
        assert not expl[k].short
        # MAS are samples of that concept, strongest first
        rows = [store.sample_ids.index(s) for s in expl[k].top_sample_ids]
        assert all(labels[r] == k for r in rows)
        assert expl[k].top_activations == sorted(expl[k].top_activations, reverse=True)
    # case and leading-space variants merge into one word holding all their token ids
    tok = model.tokenizer
    assert set(expl[0].word_token_ids[0]) == {tok.convert_tokens_to_ids(t) for t in ("dog", "Dog", "Ġdog")}


def test_filter_drops_stopwords_short_and_non_words():
    f = WordFilter()
    assert f.reason("the") == "stopword"
    assert f.reason("and") == "stopword"
    assert f.reason("at") == "short"
    assert f.reason("xq") == "short"
    assert f.reason("qwrt") == "not a word"
    assert f.reason("zzv") == "not a word"
    assert f.reason("42") is None and f.reason("7") is None  # numbers kept
    assert f.reason("dog") is None and f.reason("umbrella") is None
    assert WordFilter(keep_numbers=False).reason("42") == "number"


def test_fewer_words_than_asked_is_reported_not_padded():
    model = tiny_model()
    tok = model.tokenizer
    # a logit vector favouring only filler tokens, then "dog"
    logits = torch.full((model.cfg.d_vocab,), -10.0)
    for rank, t in enumerate(["the", "xq", "qwrt", ",", "dog", "Dog", "42"]):
        logits[tok.convert_tokens_to_ids(t)] = 10.0 - rank
    g = top_words(logits, tok, n_words=5, n_candidates=7)
    assert g.words == ["dog", "42"]
    assert g.dropped == {"the": "stopword", "xq": "short", "qwrt": "not a word", ",": "short"}
    U = concept_vectors()
    store, _ = planted_store(U)
    expl = lc.ground(model, HandDictionary(U), store, n_words=15, n_candidates=10)
    assert all(c.short and len(c.words) < 15 for c in expl.concepts)
    assert any("not padded" in n for n in expl.notes)


def test_raw_and_ln_final_lenses_follow_the_formula(planted):
    model, U, _, _ = planted
    W_U, b_U = model.W_U, model.b_U
    w, b, eps = model.ln_final.w, model.ln_final.b, model.cfg.eps
    torch.testing.assert_close(lens_logits(model, U, "raw"), U @ W_U)
    torch.testing.assert_close(lens_logits(model, U, "raw", use_bias=True), U @ W_U + b_U)
    mu = U.mean(-1, keepdim=True)
    var = ((U - mu) ** 2).mean(-1, keepdim=True)
    by_hand = ((U - mu) / torch.sqrt(var + eps) * w + b) @ W_U
    torch.testing.assert_close(lens_logits(model, U, "ln_final"), by_hand)
    torch.testing.assert_close(lens_logits(model, 3.0 * U, "ln_final"), by_hand, rtol=1e-4, atol=1e-4)  # scale-free
    assert not torch.allclose(lens_logits(model, U, "raw"), by_hand, atol=1e-3)


def test_default_lens_follows_the_store_layer(planted):
    model, U, _, _ = planted
    store, _ = planted_store(U, layer="blocks.1.hook_resid_post")
    assert lc.ground(model, HandDictionary(U), store, n_words=3).lens == "ln_final"
    store, _ = planted_store(U, layer=FINAL_HOOK)
    expl = lc.ground(model, HandDictionary(U), store, n_words=3)
    assert expl.lens == "raw" and expl.hook_name == FINAL_HOOK
    store, _ = planted_store(U, layer="ln_final.hook_normalized")  # the final layer of stores made before FINAL_HOOK
    expl = lc.ground(model, HandDictionary(U), store, n_words=3)
    assert expl.lens == "raw" and expl.hook_name == "ln_final.hook_normalized"


def test_explain_gives_top_r_concepts(planted):
    model, U, store, labels = planted
    expl = lc.ground(model, HandDictionary(U), store, n_words=4, n_images=2)
    z = 2.0 * U[1] + 0.5 * U[2] + 0.1 * U[0]
    s = lc.explain(expl, z, r=3)
    assert s.concepts == [1, 2, 0]
    assert s.words[0] == PLANTED[1]
    s = expl.explain("s4", r=1, store=store)
    assert s.concepts == [int(labels[4])] and s.captions == store.metadata[4]["captions"]
    with pytest.raises(ValueError, match="r=5"):
        lc.explain(expl, z, r=5)


def test_save_load_roundtrip(planted, tmp_path):
    model, U, store, _ = planted
    expl = lc.ground(model, HandDictionary(U), store, n_words=4, n_images=2)
    expl.save(tmp_path / "ex")
    back = Explanations.load(tmp_path / "ex")
    assert back.concepts == expl.concepts and back.lens == expl.lens and back.layer == expl.layer
    torch.testing.assert_close(back.W_dec, expl.W_dec)
    with pytest.raises(ValueError, match="dictionary"):
        back.explain(U[0], r=1)
    assert Explanations.load(tmp_path / "ex", dictionary=HandDictionary(U)).explain(U[0], r=1).concepts == [0]
    assert not list((tmp_path / "ex").glob(".*tmp"))


def test_bad_input(planted):
    model, U, store, _ = planted
    with pytest.raises(ValueError, match="d_model is 16"):
        lc.ground(model, HandDictionary(torch.randn(3, 8)), store)
    with pytest.raises(ValueError, match="lens must be"):
        lc.ground(model, HandDictionary(U), store, lens="tuned")
    with pytest.raises(ValueError, match="no layer"):
        lc.ground(model, HandDictionary(U), store, layer="blocks.0.hook_resid_post")
    empty, _ = planted_store(U)
    empty._layers["final"] = torch.zeros(0, 16)
    with pytest.raises(ValueError, match="empty"):
        lc.ground(model, HandDictionary(U), empty)
