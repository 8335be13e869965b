"""BridgeLMM on LLaVA-1.5 (a tiny random checkpoint, weights redrawn with std 0.15) against HF's own model."""

from __future__ import annotations

import pytest
import torch
from _bridge_fixtures import (
    check_sae_with_error_term,
    hf_generate,
    max_logit_gap,
    random_images,
    save_llava_checkpoint,
)
from transformers import LlavaForConditionalGeneration

import lmm_concepts as lc
from lmm_concepts.models.bridge import BridgeLMM
from lmm_concepts.models.interface import FINAL_HOOK, LMM, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:"]  # different lengths: left padding


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_llava_checkpoint(tmp_path_factory.mktemp("bridge") / "tiny-llava")


@pytest.fixture(scope="module")
def model(folder):
    return BridgeLMM.from_folder(folder, device="cpu")


@pytest.fixture(scope="module")
def hf(folder):
    return LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def inputs(model):
    return model.build_inputs(random_images(2), PROMPTS)


def test_implements_the_protocol(model, folder):
    assert isinstance(model, LMM)
    assert (model.n_layers, model.d_model, model.device.type) == (2, 32, "cpu")
    assert model.W_U.shape == (32, len(model.tokenizer)) and torch.equal(model.b_U, torch.zeros(len(model.tokenizer)))
    ident = model.identity()
    assert ident["class"] == "BridgeLMM" and ident["config"]["family"] == "llava" and len(ident["weights_digest"]) == 16
    assert BridgeLMM.from_folder(folder, device="cpu").identity() == ident  # a second load is recognised


def test_logits_equal_hf_on_a_left_padded_batch(model, hf, inputs):
    assert (inputs.attention_mask == 0).any() and inputs.pixel_values.shape == (2, 3, 32, 32)
    assert int((inputs.input_ids == hf.config.image_token_id).sum()) == 2 * 16
    assert max_logit_gap(model, hf, inputs) <= 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
def test_captions_are_hf_generate_tokens(model, hf, inputs, num_beams):
    out = model.generate_from_inputs(inputs, max_new_tokens=8, num_beams=num_beams)
    ref = hf_generate(hf, inputs, 8, num_beams=num_beams)
    assert torch.equal(out.sequences[:, : ref.shape[1]], ref)
    assert out.generated_ids.shape == (2, 8) and len(out.texts) == 2


def test_default_prompt_is_the_chat_template(model):
    inputs = model.build_inputs(random_images(1))
    text = model.tokenizer.decode(inputs.input_ids[0])
    assert text.count("<image>") == 16 and "ASSISTANT" in model.family.caption_prompt(model.processor)


def test_hooks_act_at_every_decoding_step(model, inputs):
    """A steering hook changes the caption, and the tokens are those of full forwards with the same hook."""
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1)) * 3
    calls = []

    def steer(act, hook):
        calls.append(act.shape[1])
        return act + direction

    plain = model.generate_from_inputs(inputs, max_new_tokens=6, eos_token_id=None)
    with model.hooks([(resid_hook(0), steer)]):
        steered = model.generate_from_inputs(inputs, max_new_tokens=6, eos_token_id=None)
    assert calls == [inputs.input_ids.shape[1]] + [1] * 5  # prompt, then one step per new token (KV cache)
    assert not torch.equal(steered.generated_ids, plain.generated_ids)
    full = steered.inputs()
    logits = model.logits(full, fwd_hooks=[(resid_hook(0), steer)])
    start = steered.prompt_length
    for t in range(6):
        top2 = logits[:, start - 1 + t].topk(2).values
        assert bool(((top2[:, 0] - top2[:, 1]) > 1e-4).all()), "near tie: pick another direction"
        assert torch.equal(logits[:, start - 1 + t].argmax(-1), steered.generated_ids[:, t])


def test_capture_stops_early_and_the_lens_is_exact(model, inputs):
    later = []
    got = model.capture(inputs, [resid_hook(0)], fwd_hooks=[(resid_hook(1), lambda a, hook: later.append(1))])
    assert later == [] and got[resid_hook(0)].shape == (2, inputs.input_ids.shape[1], 32)
    _, cache = model.run_with_cache(inputs)
    torch.testing.assert_close(got[resid_hook(0)], cache[resid_hook(0)], rtol=0, atol=0)
    final = model.capture(inputs, [FINAL_HOOK])[FINAL_HOOK]
    with torch.no_grad():
        torch.testing.assert_close(model.unembed_vectors(final, use_bias=True), model.logits(inputs), rtol=0, atol=1e-5)
        last = model.capture(inputs, [resid_hook(1)])[resid_hook(1)]
        torch.testing.assert_close(model.final_norm(last), final, rtol=0, atol=1e-6)
    vision = model.capture(inputs, [model.family.vision_features_hook, model.family.visual_tokens_hook])
    assert vision[model.family.vision_features_hook].shape == (2, 16, 24)  # CLIP patches, class token dropped
    assert vision[model.family.visual_tokens_hook].shape == (2, 16, 32)
    with pytest.raises(ValueError, match="no hook point 'blocks.0.hook_nope'"):
        model.capture(inputs, ["blocks.0.hook_nope"])


def test_add_sae_with_error_term_leaves_logits_unchanged(model, inputs):
    check_sae_with_error_term(model, inputs, resid_hook(0))


def test_unhooked_generation_runs_on_the_bare_hf_modules(model, hf, inputs, monkeypatch):
    """No hook and no SAE: `generate` runs the HF modules without the bridge's components (HF generate's tokens,
    no component called) and puts the components back after, even when generation fails. A hook, or an SAE,
    keeps the bridge in the call path."""
    from torch.nn.modules.module import register_module_forward_pre_hook
    from transformer_lens.model_bridge.generalized_components.block import BlockBridge

    with torch.no_grad():
        Z = model.capture(inputs, [resid_hook(0)])[resid_hook(0)][inputs.attention_mask.bool()]
    sae = lc.SemiNMF(n_concepts=4, l1=0.1).fit(Z).to_sae(resid_hook(0))
    calls = []  # block components called, seen by a global hook (which sits on no module of the model)
    handle = register_module_forward_pre_hook(lambda module, args: calls.append(1) if isinstance(
        module, BlockBridge) else None)
    layers = model.hf_model.model.language_model.layers
    try:
        out = model.generate_from_inputs(inputs, max_new_tokens=6)
        assert calls == []
        assert torch.equal(out.sequences[:, : inputs.input_ids.shape[1] + 6], hf_generate(hf, inputs, 6))
        assert all(layer is bridged for layer, bridged in zip(layers, model.bridge.blocks, strict=True))

        with model.hooks([(resid_hook(1), lambda act, hook: None)]):  # a hook that only reads
            hooked = model.generate_from_inputs(inputs, max_new_tokens=6)
        assert len(calls) == 6 * model.n_layers and torch.equal(hooked.sequences, out.sequences)
        model.add_sae(sae, use_error_term=True)
        calls.clear()
        try:
            with_sae = model.generate_from_inputs(inputs, max_new_tokens=6)
        finally:
            model.reset_saes()
        assert len(calls) == 6 * model.n_layers and torch.equal(with_sae.sequences, out.sequences)
    finally:
        handle.remove()

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(type(model.hf_model), "generate", fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        model.generate_from_inputs(inputs, max_new_tokens=6)
    assert all(layer is bridged for layer, bridged in zip(layers, model.bridge.blocks, strict=True))
