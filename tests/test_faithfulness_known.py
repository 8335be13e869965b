"""Faithfulness with known answers, on a transformer wired by hand (tests/_faith_fixtures.py): a concept that is the
only route to its word through a later block, one read by later tokens through attention, one that nothing reads,
and one that makes a single next token near-certain (the softmax-competition trap of issue 16)."""

from __future__ import annotations

import math

import pytest
import torch

from lmm_concepts.grounding.explanations import ConceptExplanation, Explanations
from lmm_concepts.hooks import remove_component_hook
from lmm_concepts.metrics.faithfulness import EFFECTS, faithfulness, hook_reach
from lmm_concepts.models.interface import FINAL_HOOK
from tests._faith_fixtures import ATTN, CONCEPTS, DOM, MLP, TOK, UNUSED, wired_model, wired_sequences, words
from tests._ground_fixtures import as_lmm, concept_vectors, plant_unembedding, tiny_model, token_sequences

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.0.hook_resid_post"  # block 1 stands between it and the logits
V = 3.0  # every concept's activation at the token of interest (the embedding holds 3·u)


def explanations(word_lists: list[list[list[int]]], hook: str = HOOK, W_dec=CONCEPTS) -> Explanations:
    concepts = [
        ConceptExplanation(index=k, words=[f"w{i}" for i in range(len(w))], word_scores=[0.0] * len(w),
                           word_token_ids=w, candidates=[], short=False, top_sample_ids=[], top_activations=[],
                           top_image_paths=[], stats={})
        for k, w in enumerate(word_lists)
    ]
    return Explanations(concepts=concepts, W_dec=W_dec.clone(), layer=hook, hook_name=hook, lens="ln_final",
                        use_bias=False, n_words=1, n_images=0, n_candidates=1)


@pytest.fixture(scope="module")
def wired():
    return wired_model(), wired_sequences()


def run(wired, word_lists, hook=HOOK, **kw):
    model, seqs = wired
    codes = torch.full((len(seqs), len(word_lists)), V)
    return faithfulness(model, explanations(word_lists, hook), seqs, codes=codes, n_random=10, **kw)


def relative_drop(clean: torch.Tensor, ablated: torch.Tensor, token: int) -> torch.Tensor:
    delta = clean - ablated
    return delta[..., token] - delta.median(-1).values


def test_the_only_route_to_a_word_through_a_later_block_beats_random(wired):
    model, seqs = wired
    res = run(wired, [words("dog")] * 4)
    assert res.score == "indirect" and not res.definitional and set(res.effects) == set(EFFECTS)
    c = res.per_concept[MLP]
    ind = c.effects["indirect"]
    assert ind.above_random and ind.drop > ind.random_drop_mean + 3 * ind.random_drop_std
    # the known answer: removing 3·u_mlp silences the MLP neuron that writes "dog", and nothing else
    p = seqs.positions[0].item()

    def silence(act, hook):
        act = act.clone()
        act[:, p, 0] = 0
        return act

    clean = model.logits(seqs.inputs)[:, p]
    silenced = model.logits(seqs.inputs, fwd_hooks=[("blocks.1.mlp.hook_post", silence)])[:, p]
    expected = relative_drop(clean, silenced, TOK["dog"]).mean().item()
    assert expected > 2.0 and ind.drop == pytest.approx(expected, abs=0.05)
    # no direct path (the unembedding never reads u_mlp) and no later token reads it
    assert abs(c.effects["direct"].drop) < 0.02 and not c.effects["continuation"].above_random
    assert c.drop == ind.drop and c.above_random


def test_an_unused_concept_does_not_beat_random(wired):
    res = run(wired, [words("dog", "beach", "pizza")] * 4)
    c = res.per_concept[UNUSED]
    for name, e in c.effects.items():
        assert not e.above_random, name
        assert abs(e.drop) < 0.02, name


def test_later_tokens_reading_the_concept_show_in_the_continuation(wired):
    res = run(wired, [words("beach")] * 4)
    cont = res.per_concept[ATTN].effects["continuation"]
    assert cont.above_random and cont.drop > 0.3 and cont.n_samples == len(wired[1])
    # the MLP-only concept leaves the later tokens alone
    assert abs(res.per_concept[MLP].effects["continuation"].drop) < 0.01


def test_softmax_competition_does_not_fool_the_score(wired):
    """Removing u_dom lowers "pizza", the near-certain next token: every other word's log-probability rises."""
    model, seqs = wired
    p = seqs.positions[0].item()
    clean = model.logits(seqs.inputs)[:, p].float()
    assert clean.softmax(-1)[:, TOK["pizza"]].min() > 0.95
    hook = remove_component_hook((V * CONCEPTS[DOM]).expand(len(seqs), -1), seqs.positions)
    ablated = model.logits(seqs.inputs, fwd_hooks=[(HOOK, hook)])[:, p].float()
    others = [TOK[w] for w in ("dog", "beach", "car")]
    logprob_drop = (clean.log_softmax(-1) - ablated.log_softmax(-1))[:, others].mean().item()
    assert logprob_drop < -3  # the trap: by log-probabilities, removing u_dom "raises" these words a lot

    res = run(wired, [words("dog", "beach", "car")] * 4)
    e = res.per_concept[DOM].effects["next_token"]
    assert abs(e.drop) < 0.05 and not e.above_random  # the relative-logit drop is not fooled
    # with the dominant word among the concept's words, the score credits exactly that word's fall
    res = run(wired, [words("pizza", "dog", "beach", "car")] * 4)
    e = res.per_concept[DOM].effects["next_token"]
    pizza = relative_drop(clean, ablated, TOK["pizza"]).mean().item()
    assert pizza > 5 and e.above_random and e.drop == pytest.approx(pizza / 4, abs=0.05)


def test_direct_effect_is_the_ablation_of_the_final_residual_alone(wired):
    """direct at block 0 = the same removal at the last block's output (every block clean): the path-patching value."""
    lists = [words("dog"), words("beach"), words("beach", "pizza"), words("pizza")]
    early = run(wired, lists)
    last = run(wired, lists, hook="blocks.1.hook_resid_post")
    assert last.definitional and set(last.effects) == {"next_token", "direct"}
    for a, b in zip(early.per_concept, last.per_concept, strict=True):
        d, nt = a.effects["direct"], b.effects["next_token"]
        assert d.drop == pytest.approx(nt.drop, abs=1e-4)
        assert d.random_drop_mean == pytest.approx(nt.random_drop_mean, abs=1e-4)  # same random directions
        assert a.effects["indirect"].drop == pytest.approx(a.effects["next_token"].drop - d.drop, rel=1e-5)


def test_after_the_final_norm_the_score_is_definitional_and_says_so():
    """At ln_final.hook_out the next-token drop is exactly v·(W_U·u)_w relative to the vocabulary: no headline."""
    llm = tiny_model()
    U = concept_vectors()
    plant_unembedding(llm, U)
    model = as_lmm(llm)
    tokens = torch.randint(17, 40, (6, 6), generator=torch.Generator().manual_seed(5))
    seqs = token_sequences(tokens, torch.full((6,), 3))
    lists = [words("dog", "puppy"), words("beach", "sand"), words("pizza")]
    res = faithfulness(model, explanations(lists, FINAL_HOOK, W_dec=U), seqs, codes=torch.full((6, 3), 2.0),
                       n_random=4)
    assert res.definitional and res.score is None and set(res.effects) == {"next_token", "direct"}
    assert math.isnan(res.mean_drop) and math.isnan(res.frac_above_random)
    assert any("definitional" in n for n in res.notes)
    lens = (2.0 * U @ llm.W_U).detach()  # [K, d_vocab]: the logit change of removing 2·u_k
    for k, c in enumerate(res.per_concept):
        ids = [w[0] for w in lists[k]]
        expected = (lens[k, ids] - lens[k].median()).mean().item()
        assert c.effects["next_token"].drop == pytest.approx(expected, abs=1e-4)
        assert c.effects["direct"] == c.effects["next_token"] and math.isnan(c.drop)


def test_hook_reach():
    assert hook_reach(FINAL_HOOK, 2).definitional and hook_reach("ln_final.hook_normalized", 2).definitional
    assert hook_reach("blocks.1.hook_resid_post", 2).definitional
    mid = hook_reach("blocks.1.hook_resid_mid", 2)  # the last MLP reads it, no later attention
    assert mid.same_token and not mid.later_tokens
    for name in ("blocks.1.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.0.hook_mlp_out"):
        r = hook_reach(name, 2)
        assert r.same_token and r.later_tokens and r.residual, name
    with pytest.raises(ValueError, match="past the model's 2 blocks"):
        hook_reach("blocks.2.hook_resid_post", 2)
    with pytest.raises(ValueError, match="cannot place hook"):
        hook_reach("blocks.0.attn.hook_z", 2)
