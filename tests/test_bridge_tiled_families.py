"""BridgeLMM on the tiled families (tiny random checkpoints, weights redrawn with std 0.15) against HF's own model:
LLaVA-NeXT and LLaVA-OneVision (any-res: a base tile plus a grid chosen by aspect ratio, `image_sizes`), Idefics3
and SmolVLM (the same class: a grid of tiles plus a global view, tags between tiles).

Each family: logits and greedy captions equal HF's on a left-padded batch of two images with different tile counts
and prompts of different lengths; the stored "predicts" vectors equal each image alone, unpadded; rows with
different tile counts stacked by `ModelInputs.concat`; an SAE spliced in with its error term; visual-token
counts equal the processor's expansion and HF's own features; the hooks of the family's README row; bad input."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from _bridge_cases import CASES, TILED, VICUNA, Case
from _bridge_checks import concat_gap, predicts_gap
from _bridge_fixtures import check_sae_with_error_term, hf_generate, max_logit_gap
from _bridge_llava_anyres import anyres_images, save_llava_next_generating_its_placeholder
from _model_fixtures import make_tokenizer
from transformers import (
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
)

from lmm_concepts.models.bridge import BridgeLMM, family_for
from lmm_concepts.models.interface import FINAL_HOOK, LMM, ModelInputs, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Loaded:
    case: Case
    model: BridgeLMM
    hf: torch.nn.Module


@pytest.fixture(scope="module", params=TILED)
def loaded(request, tmp_path_factory) -> Loaded:
    case = CASES[request.param]
    folder = case.save(tmp_path_factory.mktemp("tiled") / request.param)
    model = BridgeLMM.from_folder(folder, device="cpu")
    hf = case.hf_class.from_pretrained(folder, attn_implementation="eager").eval()
    return Loaded(case, model, hf)


@pytest.fixture(scope="module")
def images():
    return anyres_images()  # square (2x2 tiles + 1), wide (1x2 + 1), tall (2x1 + 1)


@pytest.fixture(scope="module")
def inputs(loaded, images):
    """The square image (5 tiles) with the longer prompt, the wide one (3 tiles) with the shorter prompt."""
    return loaded.model.build_inputs(images[:2], list(loaded.case.prompts))


@pytest.fixture(scope="module")
def captions(loaded, inputs):
    return loaded.model.generate_from_inputs(inputs, max_new_tokens=6)


def test_visual_token_counts_equal_the_processor_and_hf(loaded, images):
    model, hf = loaded.model, loaded.hf
    assert isinstance(model, LMM) and model.identity()["config"]["family"] == loaded.case.family
    assert (model.W_U.data_ptr() == model._embedding().weight.data_ptr()) == loaded.case.tied
    batch = model.build_inputs(images, loaded.case.prompts[1])
    counts = model.family.image_token_counts(model.config, batch)
    placeholders = (batch.input_ids == hf.config.image_token_id).sum(dim=1)
    assert torch.equal(counts, placeholders.cpu()) and len(set(counts.tolist())) > 1
    with torch.no_grad():  # HF's own visual tokens per image
        features = hf.model.get_image_features(**batch.images).pooler_output
    assert [len(f) for f in features] == counts.tolist()


def test_visual_token_counts_on_full_size_any_res_configs():
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


def test_logits_equal_hf_on_a_left_padded_batch(loaded, inputs):
    assert (inputs.attention_mask == 0).any()
    assert inputs.pixel_values.shape[:2] == (2, 5) and not inputs.pixel_values[1, 3:].any()  # padded tiles
    assert max_logit_gap(loaded.model, loaded.hf, inputs) <= 1e-4


def test_greedy_captions_are_hf_generate_tokens(loaded, inputs, captions):
    ref = hf_generate(loaded.hf, inputs, 6)
    assert torch.equal(captions.sequences[:, : ref.shape[1]], ref)


def test_predicts_vectors_equal_each_image_alone(loaded, images, captions):
    gap = predicts_gap(loaded.model, captions, images[:2], loaded.case.prompts, [resid_hook(0), FINAL_HOOK])
    assert gap <= 1e-4


def test_rows_with_different_tile_counts_stack(loaded, images):
    """`ModelInputs.concat` zero-pads the 3-tile rows to 5 tiles: image_sizes (any-res) or the all-zero rule
    (Idefics3) keeps each row's real tiles."""
    prompts = loaded.case.prompts
    assert concat_gap(loaded.model, [images[1], images[0], images[2]], [prompts[1], prompts[0], prompts[0]]) <= 1e-4


def test_add_sae_with_error_term_leaves_logits_unchanged(loaded, inputs):
    check_sae_with_error_term(loaded.model, inputs, resid_hook(0))


def test_hooks_of_the_describe_row(loaded, inputs):
    model, case = loaded.model, loaded.case
    row = model.family.describe()
    assert row["family"] == case.family and row["image tokens"] and row["final"]
    acts = model.capture(inputs, [row["vision features"], row["visual tokens"], "blocks.0.hook_resid_pre"])
    tiles = 5 + 3  # real tiles of the batch, padding dropped
    assert acts[row["vision features"]].shape == (tiles, case.patches, 24)
    assert acts[row["visual tokens"]].shape == (tiles, case.tile_tokens, 32)
    # the first tile's tokens (base tile / top-left tile) open row 0's placeholders in the residual stream
    is_image = inputs.input_ids[0] == loaded.hf.config.image_token_id
    placed = acts["blocks.0.hook_resid_pre"][0][is_image]
    torch.testing.assert_close(placed[: case.tile_tokens], acts[row["visual tokens"]][0], rtol=0, atol=1e-6)
    if case.family == "idefics3":  # every placeholder holds its tile's tokens as they are, tags between tiles
        torch.testing.assert_close(placed, acts[row["visual tokens"]][:5].flatten(0, 1), rtol=0, atol=1e-6)
        first, last = is_image.nonzero()[[0, -1], 0].tolist()
        assert not is_image[first: last + 1].all()


def test_final_is_what_the_unembedding_reads(loaded, inputs):
    """FINAL_HOOK ("final") is the final norm's output: the lens on it gives the logits, and the lens's final_norm
    on the last block's output gives it."""
    model = loaded.model
    with torch.no_grad():
        acts = model.capture(inputs, [FINAL_HOOK, resid_hook(model.n_layers - 1)])
        torch.testing.assert_close(model.unembed_vectors(acts[FINAL_HOOK], use_bias=True), model.logits(inputs),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(model.final_norm(acts[resid_hook(model.n_layers - 1)]), acts[FINAL_HOOK],
                                   rtol=0, atol=1e-6)

def test_default_prompt_is_the_chat_template(loaded, images):
    model = loaded.model
    assert model.family.caption_prompt(model.processor) == loaded.case.default_prompt
    inputs = model.build_inputs(images[:1])
    counts = model.family.image_token_counts(model.config, inputs)
    assert int((inputs.input_ids == loaded.hf.config.image_token_id).sum()) == int(counts[0]) > loaded.case.tile_tokens


def test_bad_input(loaded, images):
    model, prompt = loaded.model, loaded.case.prompts[0]
    with pytest.raises(ValueError, match=f"lacks the {loaded.case.family} image marker '<image>'"):
        model.build_inputs(images[:1], prompt.replace("<image>", ""))
    with pytest.raises(ValueError, match="holds the image marker '<image>' 2 times"):
        model.build_inputs(images[:1], prompt.replace("<image>", "<image><image>"))
    with pytest.raises(ValueError, match="sample 0 holds 2 images"):
        model.build_inputs([images[:2]], prompt)
    inputs = model.build_inputs(images[:1], prompt)
    with pytest.raises(ValueError, match="image placeholders .* needs"):  # cut through the image's placeholders
        model.logits(inputs.truncate(12))


def test_a_generated_placeholder_is_an_ordinary_token(tmp_path, images):
    """LLaVA-NeXT rows whose images take different numbers of visual tokens: a generated `<image>` past its row's
    own count is an ordinary token (HF generate's meaning), in the caption and when the sequence is run back."""
    prompts = list(VICUNA)
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
