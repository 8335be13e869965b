"""The whole pipeline on every bridge family's tiny checkpoint, loaded as a user would (`lc.load_lmm(folder)`):
`extract` -> `SemiNMF.fit` -> `ground` -> `evaluate` (CLIPScore with a tiny random open_clip), each stage through
the `LMM` interface alone. Parity with HF is the family tests' business; this one proves the stages compose."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from _bridge_cases import EVERY_FAMILY
from _bridge_fixtures import random_images

import lmm_concepts as lc
from lmm_concepts.grounding.explanations import concept_text
from lmm_concepts.metrics import clip_score, load_clip
from lmm_concepts.models.bridge import BridgeLMM, family_for, supported_architectures
from lmm_concepts.models.interface import FINAL_HOOK, resid_hook
from tests._ground_fixtures import tiny_clip_folder

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES, MAX_NEW = 4, 5
WORDS = lc.grounding.WordFilter(vocabulary=frozenset(f"w{i}" for i in range(60)), min_length=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_clip(tiny_clip_folder(tmp_path_factory.mktemp("clip") / "clip"))


def test_every_registered_family_has_a_pipeline_case():
    served = {family_for(arch).name for arch in supported_architectures()}
    covered = {name if name != "smolvlm" else "idefics3" for name in EVERY_FAMILY}
    assert served == covered


@pytest.mark.parametrize("name", list(EVERY_FAMILY))
def test_the_whole_pipeline_runs(name, clip, tmp_path):
    model = lc.load_lmm(EVERY_FAMILY[name](tmp_path / name), device="cpu")
    assert isinstance(model, BridgeLMM)
    images = random_images(N_IMAGES, seed=3)
    generated = model.generate(images, max_new_tokens=MAX_NEW).texts
    counts = Counter(w for text in generated for w in set(text.split()))
    assert counts, f"{name}: the random model wrote no word in {generated}"
    word = counts.most_common(1)[0][0]  # a word the random model does write, in as many captions as possible
    items = [(f"i{n}", im, [f"a {word} and w59"]) for n, im in enumerate(images)]
    store = lc.extract(
        model,
        items,
        word,
        layers=["final", -1],
        out=tmp_path / "store",
        batch_size=3,
        max_new_tokens=MAX_NEW,
        progress=False,
    )
    assert store.layers == [FINAL_HOOK, resid_hook(model.n_layers - 1)]
    assert (
        len(store) == counts[word] >= 2 and store.manifest["model"]["config"]["family"] == model.family.name
    )

    dico = lc.SemiNMF(n_concepts=2, l1=0.1).fit(store.layer("final"))
    expl = lc.ground(model, dico, store, n_words=3, n_images=1, layer="final", word_filter=WORDS)
    assert expl.hook_name == FINAL_HOOK and expl.lens == "raw"
    assert all(len(expl[k].words) == 3 and set(expl[k].words) <= WORDS.vocabulary for k in range(2))

    res = lc.evaluate(expl, store, clip=clip, metrics=["clipscore"], r=1)
    assert res.n_test == len(store) and set(res.scores) == {
        "concepts",
        "random_words",
        "noise_images",
        "gt_captions",
    }
    # each image's CLIPScore with the words of its strongest concept, computed directly
    top = dico.encode(store.layer("final")).argmax(dim=1)
    direct = clip_score(clip, store.images(store.sample_ids), [concept_text(expl[int(k)].words) for k in top])
    torch.testing.assert_close(res.arrays["concepts/clipscore_top1"], direct)


def test_cli_extract_reads_a_qwen2_5_vl_folder(tmp_path):
    """`lmm-concepts extract --model <folder>` on a non-LLaVA family (Qwen2.5-VL: 3-D rotary positions, images of
    different sizes) goes through `load_lmm` and writes the store `lc.extract` writes in Python."""
    from lmm_concepts.cli import main

    folder = EVERY_FAMILY["qwen2_5_vl"](tmp_path / "tiny-qwen2_5_vl")
    model = lc.load_lmm(folder, device="cpu")
    images = random_images(N_IMAGES, seed=3)
    for n, image in enumerate(images):
        image.save(tmp_path / f"i{n}.png")
    generated = model.generate(images, max_new_tokens=MAX_NEW).texts
    word = Counter(w for text in generated for w in set(text.split())).most_common(1)[0][0]
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(f'{{"id": "i{n}", "image": "i{n}.png", "captions": ["a {word}"]}}\n' for n in range(4))
    )
    args = ["extract", "--model", str(folder), "--device", "cpu", "--data", str(data), "--token", word]
    main([*args, "--layers", "final", "-1", "--batch_size", "3", "--max_new_tokens", str(MAX_NEW), "--out",
          str(tmp_path / "cli")])  # fmt: skip
    cli = lc.RepresentationStore.open(tmp_path / "cli")
    ref = lc.extract(model, lc.JsonlCaptions(data), word, ["final", -1], tmp_path / "py", batch_size=3,
                     max_new_tokens=MAX_NEW, progress=False)  # fmt: skip
    assert (
        cli.manifest["model"] == ref.manifest["model"]
        and cli.manifest["model"]["config"]["family"] == "qwen2_5_vl"
    )
    assert len(cli) >= 2 and cli.metadata == ref.metadata and cli.layers == ref.layers
    for name in ref.layers:
        torch.testing.assert_close(cli.layer(name), ref.layer(name), rtol=0, atol=0)


def test_grounding_refuses_a_store_extracted_with_another_model(tmp_path):
    """Two tiny Qwen2.5-VL checkpoints of the same width (other seeds): a store of one, grounded with the other,
    is refused with both identities named; with its own model it grounds."""
    from _bridge_families_b import CASES as FAMILY_CASES_B

    from lmm_concepts.errors import InputError

    case = FAMILY_CASES_B["qwen2_5_vl"]
    model = lc.load_lmm(case.save(tmp_path / "a", 0), device="cpu")
    other = lc.load_lmm(case.save(tmp_path / "b", 1), device="cpu")
    images = random_images(N_IMAGES, seed=3)
    generated = model.generate(images, max_new_tokens=MAX_NEW).texts
    word = Counter(w for text in generated for w in set(text.split())).most_common(1)[0][0]
    items = [(f"i{n}", im, [f"a {word}"]) for n, im in enumerate(images)]
    store = lc.extract(model, items, word, layers=["final"], out=tmp_path / "store", max_new_tokens=MAX_NEW,
                       progress=False)  # fmt: skip
    dico = lc.SemiNMF(n_concepts=2, l1=0.1).fit(store.layer("final"))
    assert other.d_model == model.d_model and other.identity() != model.identity()
    with pytest.raises(
        InputError,
        match=r"was extracted with BridgeLMM \(qwen2_5_vl\), 2 layers, d_model 32, weights \w+, but "
        r"the model given is BridgeLMM \(qwen2_5_vl\), 2 layers, d_model 32, weights",
    ):
        lc.ground(other, dico, store, n_words=2, n_images=1, word_filter=WORDS)
    assert len(lc.ground(model, dico, store, n_words=2, n_images=1, word_filter=WORDS)) == 2
