"""`lc.load_lmm(path)`: a local folder's config.json picks the model and its backend, offline; errors name the
missing file or list what is supported."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from _bridge_fixtures import random_images, save_llava_checkpoint
from _model_fixtures import save_llm

import lmm_concepts as lc
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.models import BridgeLMM, HookedLMM, ModelSpec
from lmm_concepts.models.bridge import supported_architectures
from lmm_concepts.models.interface import FINAL_HOOK, resid_hook

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_VIT = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                            "patch_size": 8},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    return save_llava_checkpoint(tmp_path_factory.mktemp("load") / "tiny-llava")


@pytest.fixture(scope="module")
def depalm_parts(tmp_path_factory):
    """A GPT-2 folder, a tiny open_clip architecture registered by name, and its checkpoint file."""
    root = tmp_path_factory.mktemp("depalm")
    (root / "lmmc-tiny-vit.json").write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(root / "lmmc-tiny-vit.json")
    torch.manual_seed(0)
    torch.save(open_clip.create_model("lmmc-tiny-vit").state_dict(), root / "vit.pt")
    return save_llm("gpt2", root / "gpt2"), "lmmc-tiny-vit", root / "vit.pt"


def test_a_llava_folder_loads_on_the_bridge_by_default_and_on_hooked_lmm_on_request(llava):
    bridge = lc.load_lmm(llava, device="cpu")
    hooked = lc.load_lmm(llava, device="cpu", backend="hooked")
    assert isinstance(bridge, BridgeLMM) and isinstance(hooked, HookedLMM)
    assert isinstance(bridge, lc.LMM) and isinstance(hooked, lc.LMM)
    inputs = bridge.build_inputs(random_images(2), ["USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:"])
    real = inputs.attention_mask.bool()
    with torch.no_grad():  # the same left-padded batch through both backends
        assert (hooked.logits(inputs) - bridge.logits(inputs))[real].abs().max() < 1e-4


def test_a_depalm_folder_round_trips(depalm_parts, tmp_path):
    llm, vision, weights = depalm_parts
    model = HookedLMM.depalm(llm, vision=vision, vision_weights=weights, n_visual_tokens=4, device="cpu")
    with torch.no_grad():
        for p in model.connector.parameters():
            p.normal_(0, 0.5)
    model.save_depalm(tmp_path / "depalm", language_model=llm)
    config = json.loads((tmp_path / "depalm" / "config.json").read_text())
    assert config["model_type"] == "depalm" and config["vision"] == vision and config["vision_weights"] == str(weights)
    loaded = lc.load_lmm(tmp_path / "depalm", device="cpu")
    assert isinstance(loaded, HookedLMM) and loaded.identity() == model.identity()
    inputs = model.build_inputs(random_images(2))
    torch.testing.assert_close(loaded.logits(inputs), model.logits(inputs), rtol=0, atol=0)
    assert ModelSpec(model=str(tmp_path / "depalm"), device="cpu").load().identity() == model.identity()
    # the same DePALM from its parts, the command line's --model <language model> --connector <file>
    parts = ModelSpec(model=str(llm), connector=str(tmp_path / "depalm" / "connector.safetensors"), vision=vision,
                      vision_weights=str(weights), device="cpu").load()
    assert parts.identity() == model.identity()
    (tmp_path / "depalm" / "connector.json").unlink()
    with pytest.raises(MissingInputError, match="lacks connector.json"):
        lc.load_lmm(tmp_path / "depalm", device="cpu")
    with pytest.raises(InputError, match="only HookedLMM serves DePALM"):
        lc.load_lmm(tmp_path / "depalm", backend="bridge")


def test_errors_name_the_missing_file_or_list_what_is_supported(llava, depalm_parts, tmp_path):
    with pytest.raises(MissingInputError, match="no model folder at"):
        lc.load_lmm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no config.json in"):
        lc.load_lmm(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"architectures": ["WhisperForConditionalGeneration"]}))
    with pytest.raises(InputError, match="no backend serves the architecture 'WhisperForConditionalGeneration'") as e:
        lc.load_lmm(tmp_path / "other")
    assert all(a in str(e.value) for a in supported_architectures()) and "DePALM folders" in str(e.value)
    with pytest.raises(InputError, match=r"holds a language model \(GPT2LMHeadModel\).*HookedLMM.save_depalm"):
        lc.load_lmm(depalm_parts[0])
    import shutil

    bare = shutil.copytree(llava, tmp_path / "bare")
    (bare / "tokenizer.json").unlink()
    with pytest.raises(MissingInputError, match="no tokenizer in .*tokenizer.json"):
        lc.load_lmm(bare, backend="hooked", device="cpu")
    with pytest.raises(MissingInputError, match="no tokenizer in"):
        lc.load_lmm(bare, device="cpu")
    with pytest.raises(InputError, match="backend must be one of"):
        lc.load_lmm(llava, backend="tl")
    with pytest.raises(InputError, match="the bridge backend does not serve it"):
        lc.load_lmm("toy", backend="bridge")
    with pytest.raises(NotImplementedError, match=r"load_lmm\('toy'\)"):
        HookedLMM.toy()


def test_the_pipeline_runs_on_the_bridge(llava, tmp_path):
    """extract -> fit -> ground -> steer through the LMM protocol alone, on the bridge backend."""
    model = lc.load_lmm(llava, device="cpu")
    images = random_images(4, seed=3)
    generated = model.generate(images, max_new_tokens=6).texts
    word = generated[0].split()[0]  # a word the random model does write
    items = [(f"i{n}", im, [f"a {word} and w59"]) for n, im in enumerate(images)]
    store = lc.extract(model, items, word, layers=["final", "-1"], out=tmp_path / "store", batch_size=3,
                       max_new_tokens=6, progress=False)
    assert store.layers == [FINAL_HOOK, resid_hook(1)] and len(store) == sum(word in t.split() for t in generated)
    dico = lc.Simple(1).fit(store.layer(-1))
    words = lc.grounding.WordFilter(vocabulary=frozenset(f"w{i}" for i in range(60)), min_length=1)
    expl = lc.ground(model, dico, store, n_words=3, n_images=1, layer=-1, word_filter=words)
    assert expl.hook_name == resid_hook(1) and expl.lens == "ln_final" and len(expl[0].words) == 3
    shift = lc.caption_shift(model, expl.W_dec[0], -1, expl[0].words,
                             lambda: model.generate(images[:2], max_new_tokens=4).texts, alphas=[0.0, 50.0])
    assert shift.captions[0] == [t for t in model.generate(images[:2], max_new_tokens=4).texts]
    assert shift.captions[1] != shift.captions[0]
