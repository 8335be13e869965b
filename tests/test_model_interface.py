"""The `LMM` interface (models/interface.py) on HookedLMM: batches, capture, logits, the final norm and the lens."""

from __future__ import annotations

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.data.synthetic import SyntheticWorld
from lmm_concepts.models.interface import FINAL_HOOK, LMM, ModelInputs, resid_hook, stop_after


@pytest.fixture(scope="module")
def toy():
    return lc.load_lmm("toy", device="cpu")


@pytest.fixture(scope="module")
def images():
    return [s.image for s in SyntheticWorld(seed=3, n_train=3, n_test=1).train]


def test_hooked_lmm_implements_the_protocol(toy):
    assert isinstance(toy, LMM)
    assert (toy.n_layers, toy.d_model) == (toy.cfg.n_layers, toy.cfg.d_model)
    ident = toy.identity()
    assert ident["class"] == "HookedLMM" and len(ident["weights_digest"]) == 16
    assert ident == toy.identity()  # deterministic


def test_model_inputs_is_a_mapping_for_forward(toy, images):
    inputs = toy.build_inputs(images)
    assert list(inputs) == ["input_ids", "attention_mask", "pixel_values"] and inputs.batch_size == 3
    torch.testing.assert_close(toy(**inputs), toy.logits(inputs))


def test_capture_equals_run_with_cache_and_stops_early(toy, images):
    inputs = toy.build_inputs(images)
    _, ref = toy.run_with_cache(**inputs)
    names = [resid_hook(0), FINAL_HOOK]
    got = toy.capture(inputs, names)
    for n in names:
        torch.testing.assert_close(got[n], ref[n], rtol=0, atol=0)
    assert stop_after([resid_hook(0)], toy.n_layers) == 1 and stop_after(names, toy.n_layers) is None
    with pytest.raises(ValueError, match="no hook points .*hook_missing_xyz"):
        toy.capture(inputs, ["blocks.0.hook_resid_post", "hook_missing_xyz"])


def test_final_hook_is_what_the_unembedding_reads(toy, images):
    """Raw lens exact: logits = FINAL @ W_U + b_U (hook_normalized lacks the final norm's gain and bias)."""
    inputs = toy.build_inputs(images)
    final = toy.capture(inputs, [FINAL_HOOK])[FINAL_HOOK]
    torch.testing.assert_close(toy.unembed_vectors(final, use_bias=True), toy.logits(inputs), rtol=1e-5, atol=1e-5)
    resid = toy.capture(inputs, [resid_hook(toy.n_layers - 1)])[resid_hook(toy.n_layers - 1)]
    torch.testing.assert_close(toy.final_norm(resid), final, rtol=1e-5, atol=1e-5)


def test_select_truncate_concat(toy, images):
    gen = toy.generate(images, max_new_tokens=6)
    full = gen.inputs()
    part = full.select([2, 0]).truncate(gen.prompt_length + 2)
    assert part.input_ids.shape == (2, gen.prompt_length + 2) and part.pixel_values.shape[0] == 2
    torch.testing.assert_close(part.pixel_values[1], full.pixel_values[0])
    both = ModelInputs.concat([part, full.select([1])], pad_token_id=0)
    assert both.input_ids.shape == (3, full.input_ids.shape[1])
    assert both.attention_mask[:2, part.input_ids.shape[1]:].sum() == 0  # right padding is masked
    # right padding leaves every real position's activations unchanged (causal attention)
    a = toy.capture(both, [FINAL_HOOK])[FINAL_HOOK][:2, : part.input_ids.shape[1]]
    b = toy.capture(part, [FINAL_HOOK])[FINAL_HOOK]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_images_encoded_once_give_the_same_logits_and_captures(toy, images):
    """Reruns on the same images (faithfulness's ablations) may skip the vision half: same numbers, rows still
    selectable; the vision hooks no longer fire."""
    inputs = toy.build_inputs(images)
    once = toy.encode_images_once(inputs)
    assert "pixel_values" not in once.images and once.batch_size == inputs.batch_size
    torch.testing.assert_close(toy.logits(once), toy.logits(inputs), rtol=0, atol=1e-6)
    names = [resid_hook(0), FINAL_HOOK]
    for name in names:
        torch.testing.assert_close(toy.capture(once, names)[name], toy.capture(inputs, names)[name], rtol=0, atol=1e-6)
    # the vision half ran on 3 images there and on 2 here: float32 noise of another batch shape only
    torch.testing.assert_close(toy.logits(once.select([2, 0])), toy.logits(inputs.select([2, 0])), rtol=0, atol=1e-5)
    seen = []
    toy.logits(once, fwd_hooks=[("hook_visual_tokens", lambda x, hook: seen.append(hook.name))])
    assert seen == []
    assert toy.encode_images_once(once) is once  # nothing left to encode
