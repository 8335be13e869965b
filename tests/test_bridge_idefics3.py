"""BridgeLMM on Idefics3 and SmolVLM (the same class; tiny random checkpoints, weights redrawn with std 0.15)
against HF's own model: logits, greedy captions, the stored "predicts" vectors, an SAE with its error term,
visual-token counts from the real tiles, rows with different tile counts stacked, and bad input."""

from __future__ import annotations

import pytest
import torch
from _bridge_checks import concat_gap, predicts_gap, sae_error_term_gap
from _bridge_fixtures import hf_generate, max_logit_gap
from _bridge_idefics3 import LAYOUTS, save_idefics3_checkpoint, save_smolvlm_checkpoint
from _bridge_llava_anyres import anyres_images
from transformers import Idefics3ForConditionalGeneration

from lmm_concepts.models.bridge import BridgeLMM
from lmm_concepts.models.interface import FINAL_HOOK, LMM, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["<|im_start|>User:<image>w1 w2 w3<end_of_utterance>\nAssistant:",
           "<|im_start|>User:<image><end_of_utterance>\nAssistant:"]
SAVE = {"idefics3": save_idefics3_checkpoint, "smolvlm": save_smolvlm_checkpoint}


@pytest.fixture(scope="module", params=list(SAVE))
def family(request, tmp_path_factory):
    """(layout, BridgeLMM, HF model) of one tiny checkpoint."""
    folder = SAVE[request.param](tmp_path_factory.mktemp("idefics3") / request.param)
    model = BridgeLMM.from_folder(folder, device="cpu")
    hf = Idefics3ForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    return request.param, model, hf


@pytest.fixture(scope="module")
def images():
    return anyres_images()  # square (2x2 tiles + global), wide (1x2 + global), tall (2x1 + global)


@pytest.fixture(scope="module")
def inputs(family, images):
    """A left-padded batch: the square image (5 tiles) with the longer prompt, the wide one (3 tiles) with the
    shorter prompt."""
    return family[1].build_inputs(images[:2], PROMPTS)


@pytest.fixture(scope="module")
def captions(family, inputs):
    return family[1].generate_from_inputs(inputs, max_new_tokens=6)


def test_visual_token_counts_follow_the_real_tiles(family, images):
    layout, model, hf = family
    assert isinstance(model, LMM) and model.identity()["config"]["family"] == "idefics3"
    tied = model.W_U.data_ptr() == model._embedding().weight.data_ptr()
    assert tied == LAYOUTS[layout]["tie_word_embeddings"]
    batch = model.build_inputs(images, PROMPTS[1])
    counts = model.family.image_token_counts(model.config, batch)
    placeholders = (batch.input_ids == hf.config.image_token_id).sum(dim=1)
    assert torch.equal(counts, placeholders.cpu()) and counts.tolist() == [20, 12, 12]  # 4 tokens per tile
    with torch.no_grad():  # and HF's own features per image
        features = hf.model.get_image_features(batch.pixel_values, batch.images["pixel_attention_mask"]).pooler_output
    assert [len(f) for f in features] == counts.tolist()


def test_logits_equal_hf_on_a_left_padded_batch(family, inputs):
    _, model, hf = family
    assert (inputs.attention_mask == 0).any()
    assert inputs.pixel_values.shape[:2] == (2, 5) and not inputs.pixel_values[1, 3:].any()  # padded tiles
    assert max_logit_gap(model, hf, inputs) <= 1e-4


def test_greedy_captions_are_hf_generate_tokens(family, inputs, captions):
    ref = hf_generate(family[2], inputs, 6)
    assert torch.equal(captions.sequences[:, : ref.shape[1]], ref)


def test_predicts_vectors_equal_each_image_alone(family, images, captions):
    assert predicts_gap(family[1], captions, images[:2], PROMPTS, [resid_hook(0), FINAL_HOOK]) <= 1e-4


def test_rows_with_different_tile_counts_stack(family, images):
    """`ModelInputs.concat` zero-pads the 3-tile rows to 5 tiles; HF drops all-zero tiles as padding."""
    assert concat_gap(family[1], [images[1], images[0], images[2]], [PROMPTS[1], PROMPTS[0], PROMPTS[0]]) <= 1e-4


def test_add_sae_with_error_term_leaves_logits_unchanged(family, inputs):
    logit_gap, code_gap = sae_error_term_gap(family[1], inputs, resid_hook(0))
    assert logit_gap <= 1e-5 and code_gap <= 1e-4


def test_hooks_of_the_describe_row(family, inputs):
    layout, model, hf = family
    row = model.family.describe()
    assert row["family"] == "idefics3" and "SmolLM" in row["final"]
    acts = model.capture(inputs, [row["vision features"], row["visual tokens"], "blocks.0.hook_resid_pre"])
    patches = (LAYOUTS[layout]["tile"] // 8) ** 2
    assert acts[row["vision features"]].shape == (5 + 3, patches, 24)  # real tiles of the batch, padding dropped
    assert acts[row["visual tokens"]].shape == (5 + 3, 4, 32)
    # the placeholders of row 0, tags between its tiles skipped, hold its 5 tiles' tokens in order
    is_image = inputs.input_ids == hf.config.image_token_id
    placed = acts["blocks.0.hook_resid_pre"][0][is_image[0]]
    torch.testing.assert_close(placed, acts[row["visual tokens"]][:5].flatten(0, 1), rtol=0, atol=1e-6)
    assert not bool(is_image[0, is_image[0].nonzero()[0]:is_image[0].nonzero()[-1]].all())  # not contiguous


def test_default_prompt_is_the_chat_template(family, images):
    model = family[1]
    prompt = "<|im_start|>User:<image>Describe the image in one sentence.<end_of_utterance>\nAssistant:"
    assert model.family.caption_prompt(model.processor) == prompt
    inputs = model.build_inputs(images[:1])  # the square image: 4 tiles + the global view
    tokens = model.tokenizer.convert_ids_to_tokens(inputs.input_ids[0].tolist())
    assert tokens[:3] == ["<s>", "<|im_start|>", "User:"] and tokens[-2:] == ["<end_of_utterance>", "Assistant:"]
    assert tokens.count("<image>") == 20 and tokens.count("<global-img>") == 1 and "<row_2_col_2>" in tokens

def test_bad_input(family, images):
    model = family[1]
    with pytest.raises(ValueError, match="lacks the idefics3 image marker '<image>'"):
        model.build_inputs(images[:1], PROMPTS[0].replace("<image>", ""))
    with pytest.raises(ValueError, match="holds the image marker '<image>' 2 times"):
        model.build_inputs(images[:1], PROMPTS[0].replace("<image>", "<image><image>"))
    with pytest.raises(ValueError, match="sample 0 holds 2 images"):
        model.build_inputs([images[:2]], PROMPTS[0])
    inputs = model.build_inputs(images[:1], PROMPTS[0])
    with pytest.raises(ValueError, match="image placeholders .* needs"):  # cut between the image's tiles
        model.logits(inputs.truncate(12))
