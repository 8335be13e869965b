"""Bad input on the bridge backend (and a generated placeholder on both backends): clear errors or HF's behaviour."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _bridge_fixtures import (
    hf_generate,
    hf_positions,
    random_images,
    save_llava_checkpoint,
    save_llava_generating_its_placeholder,
)
from transformers import LlavaForConditionalGeneration

import lmm_concepts as lc
from lmm_concepts.models.bridge import BridgeLMM, supported_architectures

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_llava_checkpoint(tmp_path_factory.mktemp("bad") / "tiny-llava")


@pytest.fixture(scope="module")
def self_prompting(tmp_path_factory):
    """(folder, HF model, HF's greedy sequences) of a LLaVA that generates its own placeholder."""
    images = random_images(2)
    folder = save_llava_generating_its_placeholder(tmp_path_factory.mktemp("self") / "llava-full", PROMPTS, images)
    hf = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    return folder, hf, images


def _step_logits(hf, inputs, max_new_tokens):
    with torch.no_grad():
        out = hf_generate(hf, inputs, max_new_tokens, output_logits=True, return_dict_in_generate=True)
    return out.sequences, torch.stack(out.logits, dim=1)  # [batch, new, d_vocab]


def test_a_generated_placeholder_is_an_ordinary_token_through_the_bridge(self_prompting):
    folder, hf, images = self_prompting
    model = BridgeLMM.from_folder(folder, device="cpu")
    inputs = model.build_inputs(images, PROMPTS)
    image_id = hf.config.image_token_id
    ref, ref_logits = _step_logits(hf, inputs, 6)
    out = model.generate_from_inputs(inputs, max_new_tokens=6)
    assert torch.equal(out.sequences[:, : ref.shape[1]], ref)
    assert (out.generated_ids == image_id).any()  # the case under test happened
    # the whole sequence read back: the generated placeholder keeps HF generate's meaning at every step
    with torch.no_grad():
        logits = model.logits(out.inputs())
    start, real = out.prompt_length, out.attention_mask[:, out.prompt_length:].bool()
    gap = (logits[:, start - 1: start - 1 + ref_logits.shape[1]] - ref_logits)[real[:, : ref_logits.shape[1]]]
    assert gap.abs().max() <= 1e-4
    assert model.capture(out.inputs(), ["ln_final.hook_out"])["ln_final.hook_out"].shape[1] == out.sequences.shape[1]


def test_a_generated_placeholder_is_an_ordinary_token_in_hooked_lmm(self_prompting):
    folder, hf, images = self_prompting
    model = lc.HookedLMM.llava(folder, device="cpu")
    assert model.lmm_cfg.image_mean == (0.5, 0.4, 0.3)  # read from processor_config.json (transformers 5 layout)
    inputs = BridgeLMM.from_folder(folder, device="cpu").build_inputs(images, PROMPTS)  # HF's processor
    ref, ref_logits = _step_logits(hf, inputs, 6)
    out = model.generate_from_inputs(**inputs, max_new_tokens=6)  # raised "no pixel_values" before
    assert (out.generated_ids == hf.config.image_token_id).any()
    with torch.no_grad():
        logits = model(out.sequences, pixel_values=inputs.pixel_values, attention_mask=out.attention_mask)
    start, real = out.prompt_length, out.attention_mask[:, out.prompt_length:].bool()
    steps = ref_logits.shape[1]
    assert (logits[:, start - 1: start - 1 + steps] - ref_logits)[real[:, :steps]].abs().max() <= 1e-4
    for b in range(2):  # tokens equal HF's wherever the top-2 gap is not a near tie
        for t in range(steps):
            top2 = ref_logits[b, t].topk(2).values
            if top2[0] - top2[1] <= 1e-3 or not real[b, t]:
                break
            assert out.generated_ids[b, t] == ref[b, inputs.input_ids.shape[1] + t], f"row {b}, step {t}"
    with torch.no_grad():  # beam search and decoding without the KV cache take the same path
        model.generate_from_inputs(**inputs, max_new_tokens=4, num_beams=2)
        no_cache = model.generate_from_inputs(**inputs, max_new_tokens=6, use_kv_cache=False)
    assert (no_cache.generated_ids == hf.config.image_token_id).any()


def test_an_unsupported_architecture_lists_the_supported_ones(folder, tmp_path):
    for arch, extra in [("FooForCausalLM", ""), ("Florence2ForConditionalGeneration", "no family spec")]:
        copy = tmp_path / arch
        shutil.copytree(folder, copy)
        config = json.loads((copy / "config.json").read_text())
        config["architectures"] = [arch]
        (copy / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=f"{arch}.*{extra}.*LlavaForConditionalGeneration"):
            BridgeLMM.from_folder(copy, device="cpu")
    assert "LlavaForConditionalGeneration" in supported_architectures()


@pytest.mark.parametrize("missing,named", [("tokenizer.json", "tokenizer.json"),
                                           ("processor_config.json", "processor_config.json"),
                                           ("config.json", "config.json"),
                                           ("model.safetensors", "safetensors")])
def test_a_missing_file_is_named(folder, tmp_path, missing, named):
    copy = tmp_path / "partial"
    shutil.copytree(folder, copy)
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=named):
        BridgeLMM.from_folder(copy, device="cpu")


def test_one_image_and_one_marker_per_sample(folder):
    model = BridgeLMM.from_folder(folder, device="cpu")
    images = random_images(2)
    with pytest.raises(ValueError, match="sample 0 holds 2 images"):
        model.build_inputs([images, images[:1]])
    with pytest.raises(ValueError, match="lacks the llava image marker '<image>'"):
        model.build_inputs(images[:1], "USER: w1 w2 ASSISTANT:")
    with pytest.raises(ValueError, match="holds the image marker '<image>' 2 times"):
        model.build_inputs(images[:1], "USER: <image> <image> ASSISTANT:")
    with pytest.raises(ValueError, match="2 images but 3 prompts"):
        model.build_inputs(images, [PROMPTS[0]] * 3)
    with pytest.raises(ValueError, match="exceeds the context of 128"):
        model.build_inputs(images[:1], max_new_tokens=200)
    inputs = model.build_inputs(images, PROMPTS)
    short = inputs.select([0]).truncate(10)  # cuts through the image's placeholders
    with pytest.raises(ValueError, match="holds 7 image placeholders .* needs 16"):
        model.logits(short)
    with torch.no_grad():  # HF's own forward on the same positions agrees with the checked path
        ref = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()(
            input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
            position_ids=hf_positions(inputs.attention_mask), pixel_values=inputs.pixel_values).logits
    assert (model(**inputs) - ref)[inputs.attention_mask.bool()].abs().max() <= 1e-4
