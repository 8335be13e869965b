"""Our dictionaries as sae-lens SAEs: registration, export, save/load round trips, add_sae, SAETrainer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from sae_lens import SAE, HookedSAETransformer
from sae_lens.config import SAETrainerConfig
from sae_lens.registry import SAE_CLASS_REGISTRY, get_sae_class, get_sae_training_class
from sae_lens.training.sae_trainer import SAETrainer
from transformer_lens import HookedTransformerConfig

import lmm_concepts as lc
from lmm_concepts.dictionary.sae import inference_sae, shuffled_batches
from lmm_concepts.dictionary.saes import (
    PCASAE,
    KMeansSAE,
    SemiNMFSAE,
    SemiNMFTrainingSAE,
    SemiNMFTrainingSAEConfig,
    register_architectures,
)
from tests._dictionary_fixtures import LEARNERS, data_for

HOOK = "blocks.0.hook_resid_post"
EXPORTED_CLASS = {
    "semi_nmf": SemiNMFSAE,
    "pca": PCASAE,
    "kmeans": KMeansSAE,
    "kmeans_distance": KMeansSAE,
    "simple": KMeansSAE,
    "nmf": SemiNMFSAE,
    "random": SemiNMFSAE,
    "sae_standard": "StandardSAE",
    "sae_topk": "TopKSAE",
}


@pytest.fixture(scope="module")
def fitted() -> dict[str, lc.ConceptDictionary]:
    """Every learner fitted once on the tiny data (the SAE ones with a small sae-lens training run)."""
    return {name: make().fit(data_for(name)) for name, make in LEARNERS.items()}


def test_architectures_are_registered_on_import_and_registration_is_idempotent():
    assert get_sae_class("semi_nmf")[0] is SemiNMFSAE
    assert get_sae_training_class("semi_nmf")[0] is SemiNMFTrainingSAE
    assert get_sae_class("pca")[0] is PCASAE and get_sae_class("kmeans")[0] is KMeansSAE
    register_architectures()  # a second call (e.g. a reload) is harmless
    assert get_sae_class("semi_nmf")[0] is SemiNMFSAE


def test_importing_the_package_is_what_registers_the_architectures():
    code = (
        "import sae_lens\n"
        "from sae_lens.registry import SAE_CLASS_REGISTRY as R, SAE_TRAINING_CLASS_REGISTRY as T\n"
        "before = {'semi_nmf', 'pca', 'kmeans'} & set(R)\n"
        "import lmm_concepts\n"
        "print(sorted(before), sorted({'semi_nmf', 'pca', 'kmeans'} & set(R)), 'semi_nmf' in T)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "[] ['kmeans', 'pca', 'semi_nmf'] True"


def test_a_foreign_class_under_our_name_is_a_clear_error():
    saved = SAE_CLASS_REGISTRY["pca"]
    SAE_CLASS_REGISTRY["pca"] = (get_sae_class("standard")[0], saved[1])
    try:
        with pytest.raises(RuntimeError, match="'pca' is already registered to StandardSAE"):
            register_architectures()
    finally:
        SAE_CLASS_REGISTRY["pca"] = saved


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_learner_exports_and_round_trips(fitted, name, tmp_path):
    learner = fitted[name]
    Z = data_for(name)
    sae = learner.to_sae(HOOK)
    expected_cls = EXPORTED_CLASS[name]
    assert type(sae).__name__ == (expected_cls if isinstance(expected_cls, str) else expected_cls.__name__)
    assert sae.cfg.metadata.hook_name == HOOK and sae.cfg.d_sae == learner.n_concepts
    assert torch.equal(sae.W_dec.detach(), learner.W_dec)  # decoder rows are the concepts
    codes = learner.encode(Z)
    with torch.no_grad():
        assert torch.allclose(sae.encode(Z), codes, atol=1e-6)
        assert torch.allclose(sae.decode(codes), learner.decode(codes), atol=1e-5)
        # codes of [batch, pos, d] activations, as inside a transformer
        assert torch.allclose(
            sae.encode(Z.reshape(4, -1, Z.shape[1])), codes.reshape(4, -1, codes.shape[1]), atol=1e-6
        )

    # sae-lens's own save_model / load_from_disk: the registered class, identical encodings
    sae.save_model(tmp_path / "sae")
    loaded = SAE.load_from_disk(tmp_path / "sae")
    assert type(loaded) is type(sae)
    with torch.no_grad():
        assert torch.equal(loaded.encode(Z), sae.encode(Z))

    # our save / load_dictionary: back to the learner's class, same params, same codes, same hook
    learner.save(tmp_path / "dico")
    back = lc.load_dictionary(tmp_path / "dico")
    assert type(back) is type(learner)
    assert back.get_params() == learner.get_params()
    assert torch.equal(back.encode(Z), codes)


def test_a_loaded_dictionary_keeps_its_hook_name(fitted, tmp_path):
    fitted["pca"].save(tmp_path / "d", hook_name=HOOK)
    assert lc.load_dictionary(tmp_path / "d").to_sae().cfg.metadata.hook_name == HOOK


def test_save_replaces_a_dictionary_atomically_and_keeps_other_files(fitted, tmp_path):
    out = tmp_path / "dico"
    fitted["pca"].save(out)
    (out / "notes.txt").write_text("kept")
    fitted["kmeans"].save(out)
    assert (out / "notes.txt").read_text() == "kept"
    assert isinstance(lc.load_dictionary(out), lc.KMeans)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dico"]  # no temporary folders left behind
    with pytest.raises(FileNotFoundError, match="no cfg.json"):
        lc.load_dictionary(tmp_path / "missing")


def test_a_plain_sae_lens_sae_loads_as_an_sae_dictionary(fitted, tmp_path):
    sae = fitted["sae_topk"].sae  # saved by sae-lens alone: no lmm_concepts metadata
    sae.save_model(tmp_path / "plain")
    dico = lc.load_dictionary(tmp_path / "plain")
    assert isinstance(dico, lc.SAEDictionary) and dico.kind == "topk"
    Z = data_for("sae_topk")
    assert torch.equal(dico.encode(Z), fitted["sae_topk"].encode(Z))


@pytest.mark.parametrize("name", ["semi_nmf", "pca", "kmeans", "sae_topk"])
def test_add_sae_with_error_term_leaves_logits_unchanged(name):
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, d_head=8, n_heads=2, d_mlp=32, d_vocab=40, n_ctx=12, act_fn="gelu", seed=0
    )
    model = HookedSAETransformer(cfg)
    tokens = torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
    Z = cache[HOOK].reshape(-1, 16)
    learner = LEARNERS[name]().fit(Z)
    model.add_sae(learner.to_sae(HOOK), use_error_term=True)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    assert torch.allclose(logits, clean, atol=1e-5)
    acts = cache[f"{HOOK}.hook_sae_acts_post"]
    assert acts.shape == (4, 12, learner.n_concepts)
    assert torch.allclose(acts.reshape(-1, learner.n_concepts), learner.encode(Z), atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_semi_nmf_sae_folds_an_input_scale(training):
    """sae-lens folds its input normalisation (the SAE saw s·x) into the weights: codes on raw x must match."""
    Z = data_for("semi_nmf")
    dico = LEARNERS["semi_nmf"]().fit(Z)
    sae = dico.to_sae()
    if training:
        trained = SemiNMFTrainingSAE(SemiNMFTrainingSAEConfig(d_in=Z.shape[1], d_sae=dico.n_concepts, l1=dico.l1))
        trained.load_state_dict(sae.state_dict())
        sae = trained
    with torch.no_grad():
        scaled_codes = sae.encode(3.0 * Z)
        sae.fold_activation_norm_scaling_factor(3.0)
        assert torch.allclose(sae.encode(Z), scaled_codes, atol=1e-4)  # same codes on raw inputs
        assert torch.allclose(sae.decode(scaled_codes), sae.decode(sae.encode(Z)), atol=1e-5)
        assert torch.allclose(3.0 * sae.decode(scaled_codes), dico.decode(scaled_codes), atol=1e-5)  # raw units
    with pytest.raises(NotImplementedError, match="cannot be folded"):
        sae.fold_W_dec_norm()


@pytest.mark.parametrize("name", ["pca", "kmeans", "simple"])
def test_tied_prototype_and_pca_saes_refuse_to_fold_a_scale(fitted, name):
    sae = fitted[name].to_sae()
    with pytest.raises(NotImplementedError):
        sae.fold_activation_norm_scaling_factor(2.0)
    with pytest.raises(NotImplementedError, match="cannot be folded"):
        sae.fold_W_dec_norm()
    assert torch.equal(sae.W_dec.detach(), fitted[name].W_dec)  # refused without touching the weights


@pytest.mark.parametrize("name", ["semi_nmf", "pca", "kmeans"])
def test_export_and_load_on_the_test_device(name, device, tmp_path):
    """`LMM_CONCEPTS_TEST_DEVICE=cuda pytest` checks the export path on a GPU."""
    Z = data_for(name).to(device)
    learner = LEARNERS[name]().to(device).fit(Z)
    sae = learner.to_sae(HOOK)
    assert sae.W_dec.device.type == torch.device(device).type and sae.cfg.device.startswith(torch.device(device).type)
    learner.save(tmp_path / "d")
    back = lc.load_dictionary(tmp_path / "d", device=device)
    assert back.W_dec.device.type == torch.device(device).type
    with torch.no_grad():
        assert torch.allclose(back.encode(Z), sae.encode(Z), atol=1e-5)


def test_semi_nmf_training_sae_with_sae_trainer_matches_the_full_batch_solver(tmp_path):
    """SAETrainer on an iterator of batches reaches the full-batch objective within 2 %."""
    n, d, K, l1 = 600, 16, 5, 0.2
    Z = lc.planted_dictionary(n, d, K, 2, seed=1).Z
    full = lc.SemiNMF(K, l1=l1).fit(Z)
    torch.manual_seed(0)
    sae = SemiNMFTrainingSAE(SemiNMFTrainingSAEConfig(d_in=d, d_sae=K, l1=l1, encode_tol=1e-4))
    steps, batch = 60, 100
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch,
        train_batch_size_samples=batch,
        lr=0.03,
        lr_end=3e-5,
        lr_decay_steps=int(0.8 * steps),
    )
    SAETrainer(
        cfg=trainer_cfg, sae=sae, data_provider=shuffled_batches(Z, batch, torch.Generator().manual_seed(0))
    ).fit()
    sae.save_inference_model(tmp_path / "trained")
    loaded = SAE.load_from_disk(tmp_path / "trained")
    assert type(loaded) is SemiNMFSAE
    assert (loaded.W_dec.norm(dim=1) <= 1 + 1e-6).all()
    trained = lc.load_dictionary(tmp_path / "trained")
    assert isinstance(trained, lc.SemiNMF)
    assert trained.objective(Z) <= 1.02 * full.objective(Z)
    assert torch.equal(inference_sae(sae).W_dec, loaded.W_dec)


def test_semi_nmf_training_with_sae_lens_input_normalisation_folds_back_to_raw_units(tmp_path):
    """With normalize_activations="expected_average_only_in" SAETrainer trains on s·x and folds s at the end."""
    Z = 5.0 * lc.planted_dictionary(300, 16, 4, 2, seed=2).Z  # far from sae-lens's target norm √d
    cfg = SemiNMFTrainingSAEConfig(d_in=16, d_sae=4, l1=0.2, normalize_activations="expected_average_only_in")
    sae = SemiNMFTrainingSAE(cfg)
    trainer_cfg = SAETrainerConfig(total_training_samples=1000, train_batch_size_samples=100, lr=0.03, lr_end=3e-4)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=shuffled_batches(Z, 100, torch.Generator()))
    trainer.fit()
    assert sae.cfg.normalize_activations == "none"
    s = 16**0.5 / Z.norm(dim=1).mean()
    assert sae.cfg.l1 == pytest.approx(0.2 / float(s) ** 2, rel=0.05)
    sae.save_inference_model(tmp_path / "d")
    dico = lc.load_dictionary(tmp_path / "d")
    assert dico.l1 == sae.cfg.l1
    V = dico.encode(Z)
    assert (dico.decode(V) - Z).pow(2).sum() < 0.2 * (Z - Z.mean(0)).pow(2).sum()  # reconstructs raw inputs
