"""HookedLMM.llava: a tiny random HF LLaVA saved to a folder gives HF's logits and greedy tokens."""

from __future__ import annotations

import pytest
import torch
from _model_fixtures import save_tiny_llava
from transformers import LlavaForConditionalGeneration

import lmm_concepts as lc

PROMPTS = ["USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:"]


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava-1.5")


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def test_llava_logits_and_greedy_tokens_match_hf(llava_dir, pixels):
    model = lc.HookedLMM.llava(llava_dir, device="cpu")
    hf = LlavaForConditionalGeneration.from_pretrained(llava_dir, local_files_only=True).eval()
    cfg = hf.config
    assert model.lmm_cfg.n_visual_tokens == 16 and model.lmm_cfg.image_token_id == cfg.image_token_id
    assert model.lmm_cfg.vision["hidden_act"] == "quick_gelu"
    inputs = model.build_inputs(pixels, PROMPTS)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert (mask == 0).any() and int((ids == cfg.image_token_id).sum()) == 32
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(**inputs)
        ref = hf(input_ids=ids, pixel_values=pixels, attention_mask=mask, position_ids=position_ids).logits
    assert (ours - ref)[mask.bool()].abs().max() <= 1e-4

    out = model.generate_from_inputs(**inputs, max_new_tokens=8)
    with torch.no_grad():
        hf_out = hf.generate(input_ids=ids, pixel_values=pixels, attention_mask=mask, do_sample=False,
                             max_new_tokens=8, pad_token_id=0, eos_token_id=2)
    hf_new = hf_out[:, ids.shape[1]:]
    with torch.no_grad():
        logits = model(out.sequences, pixel_values=pixels, attention_mask=out.attention_mask)
    compared = 0
    for b in range(2):
        for t in range(min(hf_new.shape[1], out.generated_ids.shape[1])):
            top2 = logits[b, out.prompt_length - 1 + t].topk(2).values
            if top2[0] - top2[1] <= 1e-3 or not out.attention_mask[b, out.prompt_length + t]:
                break
            assert out.generated_ids[b, t] == hf_new[b, t], f"row {b}, step {t}"
            compared += 1
    assert compared >= 4


def test_llava_from_a_model_object_leaves_it_intact(llava_dir, pixels):
    from transformers import AutoTokenizer

    hf = LlavaForConditionalGeneration.from_pretrained(llava_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(llava_dir, local_files_only=True)
    model = lc.HookedLMM.llava(hf, tokenizer=tok, device="cpu")
    inputs = model.build_inputs(pixels[:1], PROMPTS[0])
    with torch.no_grad():
        ref = hf(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"]).logits
        assert (model(**inputs) - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("layers,strategy,act", [([-3, -1], "full", "silu")])
def test_llava_reads_feature_layers_strategy_and_activation_from_config(tmp_path, pixels, layers, strategy, act):
    folder = save_tiny_llava(tmp_path / "llava-variant", feature_layer=layers, select_strategy=strategy,
                             projector_act=act)
    model = lc.HookedLMM.llava(folder, device="cpu")
    hf = LlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()
    assert model.lmm_cfg.n_visual_tokens == 17  # CLS kept
    with torch.no_grad():
        ref = hf.model.get_image_features(pixel_values=pixels, vision_feature_layer=layers,
                                          vision_feature_select_strategy=strategy).pooler_output
        ours = model.encode_images(pixels)
    assert (torch.stack(list(ref)) - ours).abs().max() <= 1e-5


def test_llava_preprocessing_follows_the_checkpoints_processor(llava_dir):
    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessor

    model = lc.HookedLMM.llava(llava_dir, device="cpu")
    assert model.lmm_cfg.image_mean == (0.5, 0.4, 0.3) and model.lmm_cfg.image_std == (0.2, 0.25, 0.3)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    ref = CLIPImageProcessor.from_pretrained(llava_dir)(img, return_tensors="pt")["pixel_values"]
    ours = model.preprocess([img])
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert (torch.as_tensor(np.asarray(ref)) - ours).abs().max() <= 2 / 255 / 0.2  # one uint8 level


def test_llava_bad_checkpoints(tmp_path, llava_dir):
    import json
    import shutil

    with pytest.raises(FileNotFoundError, match="no config.json"):
        lc.HookedLMM.llava(tmp_path, device="cpu")
    bad = tmp_path / "bad"
    shutil.copytree(llava_dir, bad)
    conf = json.loads((bad / "config.json").read_text())
    conf["text_config"]["intermediate_size"] = 48
    (bad / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="do not fit its config"):
        lc.HookedLMM.llava(bad, device="cpu")
    conf = json.loads((llava_dir / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**conf["text_config"], "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ValueError, match="not LLaVA"):
        lc.HookedLMM.llava(bad, device="cpu")
