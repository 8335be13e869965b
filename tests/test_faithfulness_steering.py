"""Faithfulness on a planted lens (definitional after the final norm) and its input checks; steering with α > 0 raises
its word logits. The known-answer faithfulness tests on a hand-wired model are in test_faithfulness_known.py."""

from __future__ import annotations

import math

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.metrics import faithfulness
from lmm_concepts.models.interface import ModelInputs
from tests._ground_fixtures import (
    PLANTED,
    HandDictionary,
    as_lmm,
    concept_vectors,
    plant_unembedding,
    planted_store,
    tiny_model,
    token_sequences,
)


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    U = concept_vectors()
    plant_unembedding(model, U)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(17, 40, (12, 6), generator=g)  # filler words only
    tokens[:, 0] = 1  # <bos>
    return model, U, tokens


@pytest.mark.parametrize("layer", ["final", "blocks.1.hook_resid_post"])
def test_faithfulness_ranks_planted_concept_above_random(setup, layer):
    model, U, tokens = setup
    store, _ = planted_store(U, layer=layer)
    expl = lc.ground(model, HandDictionary(U), store, n_words=4)
    seqs = token_sequences(tokens, torch.full((tokens.shape[0],), tokens.shape[1] - 1))
    # every sample carries each concept with activation 2 (codes given), so every concept is scored on all rows
    codes = torch.full((tokens.shape[0], 3), 2.0)
    res = faithfulness(as_lmm(model), expl, seqs, codes=codes, n_random=8)
    assert [c.index for c in res.per_concept] == [0, 1, 2]
    # both layers are read by the unembedding only: the planted words drop, but by the lens's own arithmetic
    assert res.definitional and res.score is None and math.isnan(res.mean_drop)
    for c in res.per_concept:
        e = c.effects["next_token"]
        assert e.drop > 0 and e.beats_random == 1.0 and e.above_random
    assert res.effects["next_token"].frac_above_random == 1.0
    # with codes from the dictionary (relu of the captured activations), only active samples are used
    res = faithfulness(as_lmm(model), expl, seqs, n_random=4)
    assert all(0 < c.n_samples <= tokens.shape[0] for c in res.per_concept)


def test_faithfulness_bad_input(setup):
    model, U, tokens = setup
    lmm = as_lmm(model)
    store, _ = planted_store(U)
    expl = lc.ground(model, HandDictionary(U), store, n_words=4)
    seqs = token_sequences(tokens, torch.full((12,), 5))
    with pytest.raises(ValueError, match="empty"):
        faithfulness(lmm, expl, token_sequences(tokens[:0], torch.zeros(0, dtype=torch.long)))
    other = lc.Explanations(**{**expl.__dict__, "W_dec": torch.randn(3, 8)})
    with pytest.raises(ValueError, match="d_model is 16"):
        faithfulness(lmm, other, seqs)
    with pytest.raises(ValueError, match="no concept could be scored"):
        faithfulness(lmm, expl, seqs, codes=torch.zeros(12, 3))
    with pytest.raises(ValueError, match="expected \\(12, 3\\)"):
        faithfulness(lmm, expl, seqs, codes=torch.ones(11, 3))
    with pytest.raises(ValueError, match="not defined at 'ln_final.hook_out'.*'next_token', 'direct'"):
        faithfulness(lmm, expl, seqs, score="indirect")
    with pytest.raises(ValueError, match="n_random must be >= 2"):
        faithfulness(lmm, expl, seqs, n_random=1)
    with pytest.raises(ValueError, match="another fit"):  # the dictionary is checked against the explanations
        faithfulness(lmm, expl, seqs, dictionary=HandDictionary(U.flip(0)))
    moved = lc.Explanations(**{**expl.__dict__, "hook_name": "blocks.0.attn.hook_z"})
    with pytest.raises(ValueError, match="cannot place hook"):
        faithfulness(lmm, moved, seqs)


def test_steering_raises_concept_word_logits(setup):
    model, U, tokens = setup
    ids = {k: [[model.tokenizer.convert_tokens_to_ids(w)] for w in words] for k, words in PLANTED.items()}
    shift = lc.word_logit_shift(model, U[0], "blocks.0.hook_resid_post", ids[0], {"input_ids": tokens}, alphas=[0, 2, 4, 8])
    values = list(shift.values())
    assert values == sorted(values) and values[-1] > values[0] + 1.0
    # other concepts' words do not gain as much
    other = lc.word_logit_shift(model, U[0], "blocks.0.hook_resid_post", ids[1], {"input_ids": tokens}, alphas=[0, 8])
    assert other[8.0] - other[0.0] < values[-1] - values[0]
    # the context manager steers a plain forward, then leaves the model as it was
    clean = model(tokens)
    with lc.steer(model, U[0], 8.0, "blocks.0.hook_resid_post"):
        steered = model(tokens)
    assert not torch.allclose(clean, steered)
    torch.testing.assert_close(model(tokens), clean)


def test_steering_shifts_generated_captions(setup):
    model, U, tokens = setup

    def generate():  # greedy continuation of text prompts (the model takes no image)
        seq = tokens[:4, :3]
        for _ in range(4):
            next_token = model.logits(ModelInputs(seq, torch.ones_like(seq)))[:, -1].argmax(-1)
            seq = torch.cat([seq, next_token[:, None]], dim=1)
        return [model.tokenizer.decode(row[3:]) for row in seq]

    shift = lc.caption_shift(model, U[1], "blocks.0.hook_resid_post", PLANTED[1], generate, alphas=[0.0, 30.0])
    assert shift.mention_rate[1] == 1.0 and shift.word_rate[1] > shift.word_rate[0]
    assert shift.captions[0] != shift.captions[1]


def test_steering_bad_input(setup):
    model, U, _ = setup
    with pytest.raises(ValueError, match="d_model is 16"):
        with lc.steer(model, torch.ones(8), 1.0, "blocks.0.hook_resid_post"):
            pass
    with pytest.raises(ValueError, match="no hook"):
        with lc.steer(model, U[0], 1.0, "blocks.9.hook_resid_post"):
            pass
