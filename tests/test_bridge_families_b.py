"""BridgeLMM on Gemma 3, Qwen2.5-VL, Mistral 3 and Qwen3-VL (tiny random checkpoints, weights redrawn with std 0.15) against each
family's own HF model and processor: logits, greedy and beam captions, the "predicts" vectors of a padded batch,
the logit lens, sae-lens's error-term SAE, the family's description and its bad input."""

from __future__ import annotations

import pytest
import torch
from _bridge_families_b import (
    CASES,
    captions_equal,
    generate_kwargs,
    logit_gap,
    predicts_gaps,
    save_generating_its_placeholder,
    sized_images,
)
from _bridge_fixtures import check_sae_with_error_term

from lmm_concepts.models.bridge import BridgeLMM
from lmm_concepts.models.interface import FINAL_HOOK, LMM, ModelInputs, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return CASES[request.param]


@pytest.fixture(scope="module")
def folder(case, tmp_path_factory):
    return case.save(tmp_path_factory.mktemp(case.name) / f"tiny-{case.name}", 0)


@pytest.fixture(scope="module")
def model(folder):
    return BridgeLMM.from_folder(folder, device="cpu")


@pytest.fixture(scope="module")
def hf(case, folder):
    return case.hf_model(folder)


@pytest.fixture(scope="module")
def inputs(case, model):
    return model.build_inputs(case.images(), list(case.prompts))


@pytest.fixture(scope="module")
def reference(case, model, hf):
    """HF's own processor batch and HF's logits on it."""
    batch = case.hf_batch(model.processor)
    with torch.no_grad():
        return batch, hf(**batch).logits


def test_implements_the_protocol_and_describes_itself(case, model, inputs):
    assert isinstance(model, LMM) and model.identity()["config"]["family"] == case.name
    row = model.family.describe()
    assert set(row) == {"family", "architectures", "parity", "image tokens", "vision features", "visual tokens",
                        "vision rows", "final"}
    assert case.hf_class in row["architectures"] and all(row.values())
    assert {row["vision features"], row["visual tokens"], FINAL_HOOK} <= set(model.hook_dict)
    captured = model.capture(inputs, [row["visual tokens"]])[row["visual tokens"]]
    n_visual = int((inputs.input_ids == model.config.image_token_id).sum())
    assert captured.reshape(-1, model.d_model).shape[0] == n_visual  # one visual token per placeholder


def test_logits_equal_hf_on_a_left_padded_batch(case, model, hf, inputs):
    assert (inputs.attention_mask == 0).any()
    counts = (inputs.input_ids == model.config.image_token_id).sum(1)
    assert bool(counts[0] != counts[1]) == case.token_counts_follow_size  # images of different sizes
    gap = logit_gap(case, model, hf, inputs)
    assert gap <= 1e-4, f"{case.name}: max abs gap {gap:.2e}"


@pytest.mark.parametrize("num_beams", [1, 3])
def test_captions_are_hf_generate_tokens(case, model, hf, inputs, num_beams):
    assert captions_equal(case, model, hf, inputs, num_beams=num_beams)


def test_predicts_vectors_equal_a_single_image_unpadded_recomputation(case, model, inputs):
    """The vectors extraction stores, read from the padded batch, equal those of each image alone, unpadded."""
    gaps = predicts_gaps(case, model, inputs, [resid_hook(0), FINAL_HOOK])
    assert max(gaps.values()) <= 1e-4, f"{case.name}: {gaps}"


def test_the_lens_is_hf_final_hidden_state_to_logits(model, inputs, reference):
    """unembed_vectors(final) is HF's logits, final_norm(last block) is the final hook (Gemma 3: its config holds
    a final-logit soft-cap that HF's multimodal forward never applies)."""
    _, ref = reference
    last = resid_hook(model.n_layers - 1)
    with torch.no_grad():
        acts = model.capture(inputs, [last, FINAL_HOOK])
        real = inputs.attention_mask.bool()
        lens = model.unembed_vectors(acts[FINAL_HOOK], use_bias=True)
        assert (lens - ref)[real].abs().max() <= 1e-5
        assert (model.final_norm(acts[last]) - acts[FINAL_HOOK])[real].abs().max() <= 1e-6


def test_add_sae_with_error_term_leaves_logits_unchanged(model, inputs):
    check_sae_with_error_term(model, inputs, resid_hook(0))


def test_one_image_and_one_marker_per_sample(case, model):
    images = case.images()
    with pytest.raises(ValueError, match="sample 0 holds 2 images"):
        model.build_inputs([images, images[:1]])
    with pytest.raises(ValueError, match=f"lacks the {case.name} image marker"):
        model.build_inputs(images[:1], "w1 w2")
    with pytest.raises(ValueError, match="holds the image marker .* 2 times"):
        model.build_inputs(images[:1], f"{case.marker} w1 {case.marker}")
    prompt = model.family.caption_prompt(model.processor)  # the chat template's, with the marker once
    assert prompt.count(case.marker) == 1 and model.build_inputs(images[:1]).input_ids.shape[0] == 1


def test_a_generated_placeholder_is_an_ordinary_token(case, tmp_path):
    """A placeholder the model generates is embedded as an ordinary token by HF generate (Gemma 3: scaled,
    attending causally; Qwen2.5-VL: a text position); the whole sequence read back keeps that meaning."""
    folder = save_generating_its_placeholder(case, tmp_path / "self-prompting")
    model, hf = BridgeLMM.from_folder(folder, device="cpu"), case.hf_model(folder)
    inputs = model.build_inputs(case.images(), list(case.prompts))
    with torch.no_grad():
        ref = hf.generate(**generate_kwargs(case.hf_batch(model.processor)), do_sample=False, max_new_tokens=6,
                          pad_token_id=0, eos_token_id=2, output_logits=True, return_dict_in_generate=True)
    out = model.generate_from_inputs(inputs, max_new_tokens=6)
    assert torch.equal(out.sequences[:, : ref.sequences.shape[1]], ref.sequences)
    assert (out.generated_ids == hf.config.image_token_id).any()  # the case under test happened
    with torch.no_grad():
        logits = model.logits(out.inputs())
    steps, start = len(ref.logits), out.prompt_length
    real = out.attention_mask[:, start: start + steps].bool()
    gap = (logits[:, start - 1: start - 1 + steps] - torch.stack(ref.logits, dim=1))[real].abs().max()
    assert gap <= 1e-4, f"{case.name}: gap {gap:.2e}"


# ---------------------------------------------------------------------- what only one family does


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    folder = CASES["gemma3"].save(tmp_path_factory.mktemp("gemma3") / "tiny-gemma3", 0)
    return BridgeLMM.from_folder(folder, device="cpu"), CASES["gemma3"].hf_model(folder)


def test_gemma3_image_tokens_attend_both_ways_from_derived_token_type_ids(gemma3):
    """token_type_ids come from the placeholders (equal to the processor's), and they matter: without them the
    image's tokens attend causally. A truncated batch keeps them right (they are never stored)."""
    model, hf = gemma3
    case = CASES["gemma3"]
    batch = case.hf_batch(model.processor)
    inputs = model.build_inputs(case.images(), list(case.prompts))
    assert "token_type_ids" not in inputs.images
    kwargs, _ = model._forward_kwargs(inputs)
    assert torch.equal(kwargs["token_type_ids"], batch["token_type_ids"])
    real = inputs.attention_mask.bool()
    with torch.no_grad():
        causal = hf(**{k: v for k, v in batch.items() if k != "token_type_ids"}).logits
        assert (model.logits(inputs) - causal)[real].abs().max() > 1e-2
        cut = inputs.truncate(inputs.input_ids.shape[1] - 1)
        ref = hf(**{k: v[:, :-1] if v.ndim == 2 else v for k, v in batch.items()}).logits
        assert (model.logits(cut) - ref)[real[:, :-1]].abs().max() <= 1e-4


def test_gemma3_embedding_is_scaled_and_its_norms_add_one(gemma3):
    """The residual stream starts at sqrt(d_model) · W_E[token] (HF's scaled embedding, hooked at its output), and
    the lens's final norm is HF's x / rms(x) · (1 + weight)."""
    model, hf = gemma3
    inputs = model.build_inputs(CASES["gemma3"].images()[:1], CASES["gemma3"].prompts[0])
    with torch.no_grad():
        embed = model.capture(inputs, ["hook_embed"])["hook_embed"]
        W_E = hf.get_input_embeddings().weight
        torch.testing.assert_close(embed, W_E[inputs.input_ids] * model.d_model**0.5, rtol=1e-6, atol=0)
        x = torch.randn(3, model.d_model)
        norm = hf.model.language_model.norm
        expected = x / x.pow(2).mean(-1, keepdim=True).add(norm.eps).sqrt() * (1 + norm.weight)
        torch.testing.assert_close(model.final_norm(x), expected, rtol=1e-5, atol=1e-6)
    assert model.family.final_logit_softcap(model.config) is None and model.config.text_config.final_logit_softcapping


def test_gemma3_pan_and_scan_crops_are_refused(gemma3, monkeypatch):
    """Pan and scan cuts one image into several crops, each its own set of visual tokens: refused by name.
    (transformers 5.24 turns it on only when the processor call asks; its saved setting is overridden.)"""
    model, _ = gemma3
    processor_class = type(model.processor)
    call = processor_class.__call__
    monkeypatch.setattr(processor_class, "__call__", lambda self, *args, **kwargs: call(
        self, *args, **kwargs, do_pan_and_scan=True, pan_and_scan_min_crop_size=8, pan_and_scan_max_num_crops=4,
        pan_and_scan_min_ratio_to_activate=1.2))
    with pytest.raises(ValueError, match=r"1 images into 4 crops .* \(do_pan_and_scan = False\)"):
        model.build_inputs(sized_images([(32, 96)]), "<start_of_image> w1")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    folder = CASES["qwen2_5_vl"].save(tmp_path_factory.mktemp("qwen") / "tiny-qwen2_5_vl", 0)
    return BridgeLMM.from_folder(folder, device="cpu"), CASES["qwen2_5_vl"].hf_model(folder)


def test_qwen2_5_vl_rows_of_patches_select_and_concat(qwen):
    """Patches are stored one image per row, zero-padded; selected rows and rows concatenated back (padded to
    the longest image) give the same logits at every real position."""
    model, _ = qwen
    case = CASES["qwen2_5_vl"]
    inputs = model.build_inputs(case.images(), list(case.prompts))
    grid = inputs.images["image_grid_thw"]
    assert inputs.images["pixel_values"].shape[:2] == (2, int(grid.prod(-1).max()))
    with torch.no_grad():
        whole = model.logits(inputs)
        parts = [inputs.select([1]), inputs.select([0])]
        for b, part in zip([1, 0], parts, strict=True):
            assert (model.logits(part)[0] - whole[b])[inputs.attention_mask[b].bool()].abs().max() <= 1e-4
        joined = ModelInputs.concat(parts, pad_token_id=0)
        assert (model.logits(joined) - whole[[1, 0]])[joined.attention_mask.bool()].abs().max() <= 1e-4


def test_qwen2_5_vl_rope_state_never_leaks_between_calls(qwen):
    """HF keeps `rope_deltas` on the model: a forward after a generate on another batch (other size, other
    images) equals a fresh one, and a generate after a forward gives HF's tokens."""
    model, hf = qwen
    case = CASES["qwen2_5_vl"]
    inputs = model.build_inputs(case.images(), list(case.prompts))
    other = model.build_inputs(case.images(seed=1)[::-1][:1], "<|image_pad|> w9 w9 w9 w9 w9 w9")
    with torch.no_grad():
        fresh = model.logits(inputs)
        model.generate_from_inputs(other, max_new_tokens=4)
        assert torch.equal(model.logits(inputs), fresh)
        batch = case.hf_batch(model.processor)
        model.logits(other)
        ref = hf.generate(**batch, do_sample=False, max_new_tokens=6, pad_token_id=0, eos_token_id=2)
        hf(**case.hf_batch(model.processor, ["<|image_pad|> w9"], case.images()[:1]))  # HF's own state, elsewhere
    out = model.generate_from_inputs(inputs, max_new_tokens=6)
    assert torch.equal(out.sequences[:, : ref.shape[1]], ref)


def test_qwen3_vl_deepstack_is_added_outside_the_resid_post_hook(tmp_path):
    """DeepStack features are added to the visual tokens between decoder layers 0 and 1: blocks.0's resid_post
    lacks them there (blocks.1's input has them), and every other position is the same in both hooks."""
    case = CASES["qwen3_vl"]
    model = BridgeLMM.from_folder(case.save(tmp_path / "tiny-qwen3_vl"), device="cpu")
    assert list(model.config.vision_config.deepstack_visual_indexes) == [0]
    inputs = model.build_inputs(case.images(), list(case.prompts))
    with torch.no_grad():
        acts = model.capture(inputs, [resid_hook(0), "blocks.1.hook_in"])
    visual = inputs.input_ids == model.config.image_token_id
    other = inputs.attention_mask.bool() & ~visual
    assert torch.equal(acts[resid_hook(0)][other], acts["blocks.1.hook_in"][other])
    assert ((acts[resid_hook(0)] - acts["blocks.1.hook_in"])[visual].abs().amax(-1) > 1e-3).all()
