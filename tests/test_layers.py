"""The one layer resolver (`models.layers`): every way of naming a layer, its range checks, and its users."""

from __future__ import annotations

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.errors import InputError
from lmm_concepts.models.interface import FINAL_HOOK, LEGACY_FINAL_HOOK, ModelInputs
from lmm_concepts.models.layers import is_after_final_norm, layer_label, resolve_layer
from tests._ground_fixtures import HandDictionary, concept_vectors, plant_unembedding, tiny_model


def test_indices_negative_indices_strings_final_and_hook_names():
    assert resolve_layer(0, 3) == "blocks.0.hook_resid_post"
    assert resolve_layer(-1, 3) == resolve_layer("-1", 3) == resolve_layer("2", 3) == "blocks.2.hook_resid_post"
    assert resolve_layer(-3, 3) == "blocks.0.hook_resid_post"
    assert resolve_layer("final", 3) == FINAL_HOOK
    assert resolve_layer("blocks.1.attn.hook_z", 3) == "blocks.1.attn.hook_z"
    assert resolve_layer("hook_anything", 3) == "hook_anything"  # no hook list given: taken as it is
    for bad, message in [(3, r"layer index 3 is out of range for a model with 3 layers: give a block index \(0..2"),
                         ("-4", "layer index -4 is out of range"),
                         ("blocks.3.hook_resid_post", r"no hook point 'blocks.3.hook_resid_post': it has 3 blocks"),
                         (True, "a layer must be an int .* got bool True"),
                         (1.5, r"got float 1.5: give a block index \(0..2, or negative from the end: -3..-1\), "
                               r"'final' \(the output of the final norm")]:
        with pytest.raises(InputError, match=message):
            resolve_layer(bad, 3)


def test_a_model_gives_its_blocks_and_its_hook_points():
    model = tiny_model()
    assert resolve_layer(-1, model) == "blocks.1.hook_resid_post"
    assert resolve_layer("blocks.0.attn.hook_z", model) == "blocks.0.attn.hook_z"
    with pytest.raises(InputError, match="no hook point 'blocks.0.hook_nope'.*such as blocks.0."):
        resolve_layer("blocks.0.hook_nope", model)
    with pytest.raises(InputError, match="no hook point 'nonsense'"):
        resolve_layer("nonsense", model, hooks=["blocks.0.hook_resid_post"])


def test_steer_takes_any_layer_form():
    model = tiny_model()
    tokens = torch.tensor([[1, 20, 21, 22]])
    inputs = ModelInputs(tokens, torch.ones_like(tokens))
    u = torch.randn(model.d_model)
    with lc.steer(model, u, 4.0, layer="blocks.1.hook_resid_post"):
        by_name = model.logits(inputs)
    for layer in (-1, "-1", 1, "1"):
        with lc.steer(model, u, 4.0, layer=layer):
            torch.testing.assert_close(model.logits(inputs), by_name, rtol=0, atol=0)
    assert not torch.allclose(model.logits(inputs), by_name)
    with pytest.raises(InputError, match="layer index -3 is out of range"):
        with lc.steer(model, u, 4.0, layer=-3):
            pass


def test_labels_and_the_final_norm():
    assert layer_label("blocks.3.hook_resid_post") == "3" and layer_label(FINAL_HOOK) == "final"
    assert layer_label("blocks.3.attn.hook_z") == "blocks.3.attn.hook_z"
    assert is_after_final_norm(FINAL_HOOK) and not is_after_final_norm("blocks.1.hook_resid_post")


def _legacy_store(path, Z):
    """A store as extraction wrote it when layer "final" was TransformerLens's ln_final.hook_normalized."""
    from lmm_concepts._io import write_json
    from lmm_concepts.extraction.shards import write_streamed
    from lmm_concepts.extraction.store import STORE_FORMAT

    write_streamed(path / "layers" / f"{LEGACY_FINAL_HOOK}.safetensors", [Z], Z.shape[0], Z.shape[1], Z.dtype)
    (path / "metadata.jsonl").write_text("".join(f'{{"sample_id": "s{i}", "image_path": null, "captions": ["c"]}}\n'
                                                 for i in range(len(Z))))
    write_json(path / "manifest.json", {"format": STORE_FORMAT, "complete": True, "layers": [LEGACY_FINAL_HOOK],
                                        "model": {"n_layers": 2, "d_model": Z.shape[1]}, "dtype": "float32",
                                        "n_kept": len(Z)})
    return lc.RepresentationStore.open(path)


def test_a_store_of_the_legacy_final_layer_is_read_by_its_name_only(tmp_path):
    U = concept_vectors()
    Z = torch.cat([U, 2 * U])
    store = _legacy_store(tmp_path, Z)
    assert torch.equal(store.layer(LEGACY_FINAL_HOOK), Z)
    with pytest.raises(KeyError, match=f"holds {LEGACY_FINAL_HOOK}, what layer 'final' was before it meant {FINAL_HOOK}"):
        store.layer("final")
    model = tiny_model()
    plant_unembedding(model, U)
    expl = lc.ground(model, HandDictionary(U), store, n_words=3)  # its only layer, by its recorded name
    assert expl.hook_name == expl.layer == LEGACY_FINAL_HOOK and expl.lens == "raw"
    with pytest.raises(InputError, match="no layer 'final'.*Ask for 'ln_final.hook_normalized' by name"):
        lc.ground(model, HandDictionary(U), store, n_words=3, layer="final")
    assert is_after_final_norm(LEGACY_FINAL_HOOK) and layer_label(LEGACY_FINAL_HOOK) == LEGACY_FINAL_HOOK
