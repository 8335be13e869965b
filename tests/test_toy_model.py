"""The shipped toy DePALM: loads offline, captions the world's test split correctly, its CLIP grounds words,
broken files give a clear error, and the recipe itself still learns when rerun from scratch (reduced)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.data.synthetic import ATTRIBUTES, SyntheticWorld, tokenize, vocabulary, word_list_caption
from lmm_concepts.zoo import ToyWeightsError, caption_accuracy, load_toy, load_toy_clip
from lmm_concepts.zoo.recipe import TrainToyConfig, pixels, train_toy
from lmm_concepts.zoo.toy import FILES, SHIPPED


@pytest.fixture(scope="module")
def toy():
    return load_toy()


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    # The recipe's own world (seed 0, 500 test images): the test split was never trained on.
    return SyntheticWorld(seed=0, n_train=0, n_test=500)


def test_shipped_weights_are_small_and_complete():
    sizes = {name: (SHIPPED / name).stat().st_size for name in FILES}
    assert sum(sizes.values()) <= 10 * 2**20, sizes


def test_load_lmm_toy_is_the_shipped_model(toy):
    from lmm_concepts.models import HookedLMM

    model = lc.load_lmm("toy", device="cpu")
    assert isinstance(model, HookedLMM) and model.lmm_cfg.n_visual_tokens == 10
    assert model.cfg.d_vocab == toy.cfg.d_vocab
    for (k, a), b in zip(model.state_dict().items(), toy.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_toy_captions_the_test_split_at_90_percent(toy, world):
    acc = caption_accuracy(toy, world, n=240)
    assert acc.one_object["n"] >= 80 and acc.multi_object["n"] >= 60
    for a in ATTRIBUTES:
        assert acc.one_object[a] >= 0.9, (a, acc.one_object, acc.examples)
        assert acc.multi_object[a] >= 0.8, (a, acc.multi_object, acc.examples)


def test_preprocess_matches_the_training_pixels(toy, world):
    images = [s.image for s in world.test[:4]]
    uint8 = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)
    torch.testing.assert_close(toy.preprocess(images), pixels(uint8, "cpu"), atol=1e-5, rtol=0)


def test_toy_clip_prefers_the_true_word_list(world):
    clip = load_toy_clip()
    samples = world.test[:64]
    with torch.no_grad():
        img = clip.model.encode_image(torch.stack([clip.preprocess(s.image) for s in samples]))
        txt = clip.model.encode_text(clip.tokenize([word_list_caption(s.attributes) for s in samples]))
    sim = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    # Each image's own word list beats the other images' lists far more often than chance.
    own = sim.diag()[:, None]
    differs = torch.tensor([[a.attributes != b.attributes for b in samples] for a in samples])
    win_rate = ((own > sim) | ~differs).float().mean().item()
    assert win_rate > 0.9, win_rate


@pytest.mark.parametrize("broken", ["missing", "corrupt", "old_clip_config"])
def test_broken_weight_file_says_how_to_retrain(tmp_path, broken):
    folder = tmp_path / "toy"
    shutil.copytree(SHIPPED, folder)
    target = folder / "lm.safetensors"
    if broken == "missing":
        target.unlink()
    elif broken == "corrupt":
        target.write_bytes(target.read_bytes()[:100])
    else:  # a clip.json from another version of the recipe, with a field this version lacks
        meta = json.loads((folder / "clip.json").read_text())
        meta["clip"]["retired_option"] = 1
        (folder / "clip.json").write_text(json.dumps(meta))
    with pytest.raises(ToyWeightsError, match="lmm-concepts train-toy"):
        load_toy(folder)


def test_reduced_recipe_learns_from_scratch(tmp_path):
    # The whole recipe (world -> CLIP -> LM -> connector -> captions), shrunk to seconds: 32-pixel images,
    # a half-width ResNet, a few dozen steps per stage.
    cfg = TrainToyConfig(out=str(tmp_path / "toy"), n_train=200, n_test=16, image_size=32, eval_samples=16,
                         threads=2)
    cfg.clip.width, cfg.clip.batch_size = 8, 32
    cfg.clip.warmup_steps, cfg.clip.contrastive_steps = 50, 4
    cfg.lm.steps, cfg.lm.batch_size = 60, 32
    cfg.connector.steps, cfg.connector.batch_size = 40, 32
    summary = train_toy(cfg)
    log = summary["log"]

    def losses(stage):
        return [r["loss"] for r in log if r["stage"] == stage]

    # Each stage's loss falls well below where it started (mean of its last two logged values).
    for stage, ratio in (("clip-warmup", 0.8), ("lm", 0.4), ("connector", 0.75)):
        seen = losses(stage)
        assert sum(seen[-2:]) / 2 < ratio * seen[0], (stage, seen)
    # The folder it wrote loads like the shipped one and captions in the world's words.
    model = load_toy(cfg.out)
    images = [s.image for s in SyntheticWorld(seed=0, n_train=0, n_test=4, image_size=32).test]
    for text in model.generate(images, max_new_tokens=20).texts:
        assert text and set(tokenize(text)) <= set(vocabulary()), text
    # A rerun with the same config resumes from the saved stages instead of retraining.
    again = train_toy(cfg)
    assert not again["log"]
