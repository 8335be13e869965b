"""evaluate: the paper's table with its baselines, on tiny local CLIP and BERT models, saved and reloaded."""

from __future__ import annotations

import math

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.metrics import EvaluationResults, clip_score, load_bert, load_clip
from tests._ground_fixtures import (
    HandDictionary,
    as_lmm,
    concept_vectors,
    plant_unembedding,
    planted_store,
    tiny_bert,
    tiny_clip_folder,
    tiny_model,
    token_sequences,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model = tiny_model()
    U = concept_vectors()
    plant_unembedding(model, U)
    train, _ = planted_store(U, seed=2)
    test, labels = planted_store(U, n_per_concept=3, seed=5)
    expl = lc.ground(model, HandDictionary(U), train, n_words=4, n_images=2)
    clip = load_clip(tiny_clip_folder(root / "clip"))
    bert = load_bert(tiny_bert(root / "bert"), num_layers=2)
    return model, U, expl, test, labels, clip, bert


def test_evaluate_table_matches_direct_computation(world, tmp_path):
    model, U, expl, test, labels, clip, bert = world
    metrics = ["clipscore", "bertscore", "overlap", "mas_words", "quality"]
    res = lc.evaluate(expl, test, clip=clip, bert=bert, metrics=metrics, r=2)
    assert set(res.scores) == {"concepts", "random_words", "noise_images", "gt_captions"}
    assert set(res.scores["concepts"]) == {"clipscore_top1", "clipscore_top2", "bertscore_top1", "bertscore_top2"}
    assert res.n_test == len(test.sample_ids) and res.bert_rescaled is False

    # top-1 CLIPScore of each test image = its own concept's words (the planted store has one concept per sample)
    images = test.images(test.sample_ids)
    texts = [expl[int(k)].text() for k in labels]
    torch.testing.assert_close(res.arrays["concepts/clipscore_top1"], clip_score(clip, images, texts))
    # BERTScore top-1: that concept's words against the image's captions
    F = bert.f1([" ".join(expl[int(k)].words) for k in labels], [m["captions"] for m in test.metadata])
    torch.testing.assert_close(res.arrays["concepts/bertscore_top1"], F)
    # the planted captions use the concept's own words: grounded words beat random words on BERTScore
    assert res.scores["concepts"]["bertscore_top1"] > res.scores["random_words"]["bertscore_top1"]
    assert res.overlap == 0.0  # disjoint planted words
    assert res.quality["n_dead"] == 0 and res.quality["relative_error"] < 0.2
    assert set(res.mas_words) == {"concepts", "random_words"}

    md = res.to_markdown()
    assert "| concepts |" in md and "not baseline-rescaled" in md
    res.save(tmp_path / "res")
    back = EvaluationResults.load(tmp_path / "res")
    assert back.scores.keys() == res.scores.keys() and back.overlap == res.overlap
    for k, v in res.arrays.items():
        torch.testing.assert_close(back.arrays[k], v.float())
    assert (tmp_path / "res" / "results.md").read_text() == md


def test_evaluate_faithfulness_and_overlap_only(world):
    model, U, expl, test, _, _, _ = world
    res = lc.evaluate(expl, test, metrics=["overlap"])
    assert res.overlap == 0.0 and res.scores == {}
    tokens = torch.randint(17, 40, (6, 5))
    res = lc.evaluate(
        expl, test, metrics=["faithfulness"], model=as_lmm(model),
        faithfulness_inputs=token_sequences(tokens, torch.full((6,), 4)),
    )
    # the explanations are at the final norm: definitional there, so the next-token effect is reported, no headline
    f = res.faithfulness
    assert f["definitional"] and f["score"] is None
    assert f["effects"]["next_token"]["mean_drop"] > f["effects"]["next_token"]["mean_random_drop"]
    assert "not testable" in res.to_markdown()


def test_evaluate_bad_input(world):
    model, U, expl, test, _, clip, bert = world
    with pytest.raises(ValueError, match="load_clip"):
        lc.evaluate(expl, test, metrics=["clipscore"])
    with pytest.raises(ValueError, match="load_bert"):
        lc.evaluate(expl, test, clip=clip, metrics=["bertscore"])
    with pytest.raises(ValueError, match="unknown metrics"):
        lc.evaluate(expl, test, metrics=["bleu"])
    empty, _ = planted_store(U)
    empty._layers["final"] = torch.zeros(0, 16)
    with pytest.raises(ValueError, match="empty"):
        lc.evaluate(expl, empty, clip=clip, metrics=["clipscore"])
    loaded = lc.Explanations(**{**expl.__dict__, "dictionary": None})
    with pytest.raises(ValueError, match="dictionary"):
        lc.evaluate(loaded, test, clip=clip, metrics=["clipscore"])
    with pytest.raises(ValueError, match="faithfulness needs"):
        lc.evaluate(expl, test, metrics=["faithfulness"])
    assert not math.isnan(lc.evaluate(expl, test, metrics=["overlap"]).overlap)


def test_evaluate_computes_shared_clip_inputs_once(world, monkeypatch):
    model, U, expl, test, labels, clip, bert = world
    kw = dict(metrics=["clipscore", "mas_words"], baselines=("random_words",), r=2)
    plain = lc.evaluate(expl, test, clip=clip, **kw)
    calls = {"texts": 0, "images": 0}
    encode_texts, encode_images = clip.encode_texts, clip.encode_images

    def count(kind, fn):
        def counted(x):
            calls[kind] += 1
            return fn(x)
        return counted

    monkeypatch.setattr(clip, "encode_texts", count("texts", encode_texts))
    monkeypatch.setattr(clip, "encode_images", count("images", encode_images))
    res = lc.evaluate(expl, test, clip=clip, **kw)
    # one text batch per row (concepts, random words), shared by clipscore and mas_words; one pass over the images
    assert calls == {"texts": 2, "images": 1}
    assert res.scores == plain.scores and res.mas_words == plain.mas_words
