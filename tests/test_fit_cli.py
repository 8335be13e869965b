"""`lmm-concepts fit` end to end on small matrix files: every method writes a dictionary sae-lens can load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sae_lens import SAE
from safetensors.torch import save_file

import lmm_concepts as lc
from lmm_concepts.cli import main
from lmm_concepts.dictionary import fit_cli
from tests._dictionary_fixtures import planted

ARCHITECTURE = {
    "semi_nmf": "semi_nmf",
    "pca": "pca",
    "kmeans": "kmeans",
    "simple": "kmeans",
    "nmf": "semi_nmf",
    "random": "semi_nmf",
    "sae": "standard",
}


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "Z.npy"
    np.save(path, planted().numpy())
    return path


def test_fit_semi_nmf_end_to_end_and_resume(npy, tmp_path, capsys):
    out = tmp_path / "dico"
    args = ["fit", str(npy), "--method", "semi_nmf", "--n-concepts", "4", "--l1", "0.2", "--out", str(out)]
    main(args)
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "semi_nmf" and cfg["d_sae"] == 4 and cfg["l1"] == 0.2
    assert json.loads((out / "fit_config.json").read_text())["method"] == "semi_nmf"
    dico = lc.load_dictionary(out)
    assert isinstance(dico, lc.SemiNMF) and dico.W_dec.shape == (4, 16)
    sae = SAE.load_from_disk(out)
    Z = planted()
    with torch.no_grad():
        assert torch.equal(sae.encode(Z), dico.encode(Z))
    # same options again: nothing is refitted
    stamp = (out / "sae_weights.safetensors").stat().st_mtime_ns
    main(args)
    assert (out / "sae_weights.safetensors").stat().st_mtime_ns == stamp
    assert "already holds this dictionary" in capsys.readouterr().out
    main([*args, "--overwrite", "true"])
    assert (out / "sae_weights.safetensors").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("method", ["pca", "kmeans", "simple", "nmf", "random", "sae"])
def test_every_method_writes_a_loadable_dictionary(method, tmp_path):
    Z = planted()
    path = tmp_path / "Z.safetensors"
    save_file({"reps": (Z.abs() if method == "nmf" else Z).contiguous()}, path)
    out = tmp_path / method
    main(
        [
            "fit",
            str(path),
            "--method",
            method,
            "--n-concepts",
            "3",
            "--out",
            str(out),
            "--sae-training-samples",
            "1200",
        ]
    )
    assert json.loads((out / "cfg.json").read_text())["architecture"] == ARCHITECTURE[method]
    dico = lc.load_dictionary(out)
    assert dico.n_concepts == 3 and dico.encode(Z.abs()).shape == (Z.shape[0], 3)


def test_matrix_files_and_bad_inputs_are_explained(tmp_path):
    Z = planted()
    two = tmp_path / "two.safetensors"
    save_file({"a": Z, "b": Z[:, :8].contiguous()}, two)
    with pytest.raises(ValueError, match=r"holds tensors \['a', 'b'\]: choose one with --layer"):
        fit_cli.load_representations(two, None)
    assert fit_cli.load_representations(two, "b")[0].shape == (Z.shape[0], 8)
    with pytest.raises(KeyError, match="no tensor 'c'"):
        fit_cli.load_representations(two, "c")
    (tmp_path / "Z.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="expected a store folder or a file ending in"):
        fit_cli.load_representations(tmp_path / "Z.csv", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit_cli.load_representations(tmp_path / "nothing.npy", None)
    with pytest.raises(SystemExit):
        main(["fit", str(two), "--method", "ica", "--out", str(tmp_path / "x")])


class _Store:
    """What `fit` uses of extraction's RepresentationStore: `layers`, `layer(key)`, `hook_name(key)`."""

    layers = ["blocks.1.hook_resid_post", "blocks.3.hook_resid_post"]

    def hook_name(self, key):
        return {3: self.layers[1], -1: self.layers[1], "final": self.layers[1]}.get(key, key)

    def layer(self, key):
        assert self.hook_name(key) in self.layers
        return planted()


def test_a_store_layer_gives_the_hook_name_of_the_exported_sae(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setattr(fit_cli, "_open_store", lambda path: _Store())
    with pytest.raises(ValueError, match="choose a layer with --layer"):
        fit_cli.load_representations(store, None)
    out = tmp_path / "dico"
    main(["fit", str(store), "--layer", "-1", "--method", "pca", "--n-concepts", "3", "--out", str(out)])
    assert SAE.load_from_disk(out).cfg.metadata.hook_name == "blocks.3.hook_resid_post"
