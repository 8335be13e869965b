"""BridgeLMM on LLaVA-NeXT and LLaVA-OneVision (any-res tiling; tiny random checkpoints, weights redrawn with std
0.15) against HF's own model: logits, greedy captions, the stored "predicts" vectors, an SAE with its error term,
visual-token counts from `image_sizes`, rows with different tile counts stacked, and bad input."""

from __future__ import annotations

import pytest
import torch
from _bridge_checks import concat_gap, predicts_gap, sae_error_term_gap
from _bridge_fixtures import hf_generate, max_logit_gap
from _bridge_llava_anyres import (
    anyres_images,
    save_llava_next_checkpoint,
    save_llava_next_generating_its_placeholder,
    save_llava_onevision_checkpoint,
)
from _model_fixtures import make_tokenizer
from transformers import (
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
)

from lmm_concepts.models.bridge import BridgeLMM, family_for
from lmm_concepts.models.interface import FINAL_HOOK, LMM, ModelInputs, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {  # family -> (checkpoint builder, HF class, two prompts of different lengths)
    "llava_next": (save_llava_next_checkpoint, LlavaNextForConditionalGeneration,
                   ["USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:"]),
    "llava_onevision": (save_llava_onevision_checkpoint, LlavaOnevisionForConditionalGeneration,
                        ["<|im_start|>user\n<image>\nw1 w2 w3<|im_end|>\n<|im_start|>assistant\n",
                         "<|im_start|>user\n<image><|im_end|>\n<|im_start|>assistant\n"]),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, BridgeLMM, HF model, prompts) of one family's tiny checkpoint."""
    save, hf_class, prompts = FAMILIES[request.param]
    folder = save(tmp_path_factory.mktemp("anyres") / request.param)
    model = BridgeLMM.from_folder(folder, device="cpu")
    hf = hf_class.from_pretrained(folder, attn_implementation="eager").eval()
    return request.param, model, hf, prompts


@pytest.fixture(scope="module")
def images():
    return anyres_images()  # square (2x2 tiles + base), wide (1x2 + base), tall (2x1 + base)


@pytest.fixture(scope="module")
def inputs(family, images):
    """A left-padded batch: the square image (5 tiles) with the longer prompt, the wide one (3 tiles) with the
    shorter prompt."""
    _, model, _, prompts = family
    return model.build_inputs(images[:2], prompts)


@pytest.fixture(scope="module")
def captions(family, inputs):
    return family[1].generate_from_inputs(inputs, max_new_tokens=6)


def test_visual_token_counts_follow_image_sizes(family, images):
    name, model, hf, prompts = family
    assert isinstance(model, LMM) and model.identity()["config"]["family"] == name
    batch = model.build_inputs(images, prompts[1])
    counts = model.family.image_token_counts(model.config, batch)
    placeholders = (batch.input_ids == hf.config.image_token_id).sum(dim=1)
    assert torch.equal(counts, placeholders.cpu())  # the processor's expansion, computed from image_sizes alone
    assert len(set(counts.tolist())) == 3  # three aspect ratios, three counts
    with torch.no_grad():  # and HF's own packing of the features
        packed = hf.model.get_image_features(batch.pixel_values, batch.images["image_sizes"]).pooler_output
    assert [len(f) for f in packed] == counts.tolist()


def test_visual_token_counts_on_full_size_configs():
    """The published layouts (LLaVA-1.6: CLIP 336 px / patch 14, 5 pinpoints; OneVision: SigLIP 384 px, 36 pinpoints
    up to 2304 px, anyres_max_9 shrinking) on 300 random image sizes: the counts from image_sizes equal the
    processor's own count (`_get_num_multimodal_tokens`, the expansion's arithmetic without the pixels)."""
    tok = make_tokenizer(with_bos=True, extra_special=("<image>", "<video>"))
    sizes = torch.randint(20, 2600, (300, 2), generator=torch.Generator().manual_seed(0))
    next_config, ov_config = LlavaNextConfig(), LlavaOnevisionConfig()
    layouts = [
        (next_config, LlavaNextProcessor(
            image_processor=LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                                    image_grid_pinpoints=next_config.image_grid_pinpoints),
            tokenizer=tok, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)),
        (ov_config, LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(image_grid_pinpoints=ov_config.image_grid_pinpoints),
            tokenizer=tok, num_image_tokens=729, vision_feature_select_strategy="full",
            video_processor=LlavaOnevisionVideoProcessor())),
    ]
    for config, processor in layouts:
        ref = processor._get_num_multimodal_tokens(image_sizes=sizes.tolist())["num_image_tokens"]
        ids = torch.zeros(len(sizes), 1, dtype=torch.long)
        family = family_for(type(config).__name__.replace("Config", "ForConditionalGeneration"))
        counts = family.image_token_counts(config, ModelInputs(ids, ids, {"image_sizes": sizes}))
        assert counts.tolist() == ref
    assert 9 * 729 < max(ref) < 13 * 729  # unshrunk, a 6x6 grid would take 36 tiles' worth: anyres_max_9 acted


def test_logits_equal_hf_on_a_left_padded_batch(family, inputs):
    _, model, hf, _ = family
    assert (inputs.attention_mask == 0).any()
    assert inputs.pixel_values.shape[:2] == (2, 5) and not inputs.pixel_values[1, 3:].any()  # padded tiles
    assert max_logit_gap(model, hf, inputs) <= 1e-4


def test_greedy_captions_are_hf_generate_tokens(family, inputs, captions):
    _, model, hf, _ = family
    ref = hf_generate(hf, inputs, 6)
    assert torch.equal(captions.sequences[:, : ref.shape[1]], ref)


def test_predicts_vectors_equal_each_image_alone(family, images, captions):
    _, model, _, prompts = family
    assert predicts_gap(model, captions, images[:2], prompts, [resid_hook(0), FINAL_HOOK]) <= 1e-4


def test_rows_with_different_tile_counts_stack(family, images):
    """`ModelInputs.concat` zero-pads the 3-tile rows to 5 tiles; image_sizes keeps each row's real count."""
    _, model, _, prompts = family
    assert concat_gap(model, [images[1], images[0], images[2]], [prompts[1], prompts[0], prompts[0]]) <= 1e-4


def test_add_sae_with_error_term_leaves_logits_unchanged(family, inputs):
    logit_gap, code_gap = sae_error_term_gap(family[1], inputs, resid_hook(0))
    assert logit_gap <= 1e-5 and code_gap <= 1e-4


def test_hooks_of_the_describe_row(family, inputs):
    name, model, hf, _ = family
    row = model.family.describe()
    assert row["family"] == name and "image_sizes" not in row["image tokens"] and row["final"]
    acts = model.capture(inputs, [row["vision features"], row["visual tokens"], "blocks.0.hook_resid_pre"])
    tiles = 5 + 3  # real tiles of the batch, padding dropped
    assert acts[row["vision features"]].shape == (tiles, 16, 24)  # 4x4 patches per tile
    assert acts[row["visual tokens"]].shape == (tiles, 16, 32)
    # the base tile's tokens open each image's placeholders in the residual stream
    is_image = inputs.input_ids == hf.config.image_token_id
    first = acts["blocks.0.hook_resid_pre"][0][is_image[0]][:16]
    torch.testing.assert_close(first, acts[row["visual tokens"]][0], rtol=0, atol=1e-6)


def test_default_prompt_is_the_chat_template(family, images):
    name, model, hf, _ = family
    expected = {"llava_next": "USER: <image>\nDescribe the image in one sentence. ASSISTANT:",
                "llava_onevision": "<|im_start|>user\n<image>\nDescribe the image in one sentence.<|im_end|>\n"
                                   "<|im_start|>assistant\n"}
    assert model.family.caption_prompt(model.processor) == expected[name]
    inputs = model.build_inputs(images[:1])
    counts = model.family.image_token_counts(model.config, inputs)
    assert int((inputs.input_ids == hf.config.image_token_id).sum()) == int(counts[0]) > 16

def test_bad_input(family, images):
    name, model, _, prompts = family
    with pytest.raises(ValueError, match=f"lacks the {name} image marker '<image>'"):
        model.build_inputs(images[:1], prompts[0].replace("<image>", ""))
    with pytest.raises(ValueError, match="holds the image marker '<image>' 2 times"):
        model.build_inputs(images[:1], prompts[0].replace("<image>", "<image> <image>"))
    with pytest.raises(ValueError, match="sample 0 holds 2 images"):
        model.build_inputs([images[:2]], prompts[0])
    inputs = model.build_inputs(images[:1], prompts[0])
    with pytest.raises(ValueError, match="image placeholders .* needs"):  # cut through the image's placeholders
        model.logits(inputs.truncate(20))


def test_a_generated_placeholder_is_an_ordinary_token(tmp_path, images):
    """Rows whose images take different numbers of visual tokens: a generated `<image>` past a row's own count is
    an ordinary token (HF generate's meaning), in the caption and when the whole sequence is run back."""
    prompts = FAMILIES["llava_next"][2]
    folder = save_llava_next_generating_its_placeholder(tmp_path / "self-prompting", prompts, images[:2])
    model = BridgeLMM.from_folder(folder, device="cpu")
    hf = LlavaNextForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = model.build_inputs(images[:2], prompts)
    ref = hf_generate(hf, inputs, 4, output_logits=True, return_dict_in_generate=True)
    out = model.generate_from_inputs(inputs, max_new_tokens=4)
    assert torch.equal(out.sequences[:, : ref.sequences.shape[1]], ref.sequences)
    assert (out.generated_ids[1] == hf.config.image_token_id).any()  # the case under test happened
    with torch.no_grad():
        logits = model.logits(out.inputs())
    steps, start = len(ref.logits), out.prompt_length
    real = out.attention_mask[:, start: start + steps].bool()
    gap = (logits[:, start - 1: start - 1 + steps] - torch.stack(ref.logits, dim=1))[real]
    assert gap.abs().max() <= 1e-4
