"""Scale-free L1 rules (issue 12): "rms:f" and "active:k", resolved on the training data, saved as absolute values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sae_lens import SAE

import lmm_concepts as lc
from lmm_concepts.cli import main
from lmm_concepts.dictionary.l1_rule import L1Rule, resolve_l1
from lmm_concepts.dictionary.lasso import rms_norm
from lmm_concepts.dictionary.saes import SemiNMFTrainingSAE, SemiNMFTrainingSAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def Z():
    return lc.planted_dictionary(1200, 32, 8, 3, noise=0.05, seed=2).Z


def _active(V: torch.Tensor) -> float:
    return float((V > 0).sum(dim=1, dtype=torch.float64).mean())


def test_specs_parse_and_print():
    assert L1Rule.parse(0.5) == L1Rule.absolute(0.5) == L1Rule.parse("0.5")
    assert L1Rule.parse("rms:0.1") == L1Rule.relative(0.1) and str(L1Rule.relative(0.1)) == "rms:0.1"
    assert L1Rule.parse(" active : 8 ") == L1Rule.active(8) and str(L1Rule.active(8)) == "active:8"
    assert L1Rule.parse(L1Rule.active(3)) == L1Rule.active(3)


def test_relative_l1_is_a_fraction_of_the_rms_norm_and_scale_free(Z):
    a = lc.SemiNMF(8, l1="rms:0.05").fit(Z)
    b = lc.SemiNMF(8, l1="rms:0.05").fit(8 * Z)
    assert a.l1 == pytest.approx(0.05 * float(Z.double().norm(dim=1).pow(2).mean().sqrt()), rel=1e-9)
    assert a.l1_ == a.l1 and a.l1_rule == "rms:0.05"
    assert b.l1 == pytest.approx(8 * a.l1, rel=1e-6)
    assert torch.allclose(a.W_dec, b.W_dec, atol=1e-4)  # the same method at any scale
    assert _active(a.encode(Z)) == pytest.approx(_active(b.encode(8 * Z)), abs=0.01)


def test_target_sparsity_is_met_on_the_training_data(Z):
    model = lc.SemiNMF(8, l1="active:4").fit(Z)
    assert model.l1_rule == "active:4"
    assert _active(model.encode(Z)) == pytest.approx(4, rel=0.1)
    sparser = lc.SemiNMF(8, l1="active:2").fit(Z)
    assert sparser.l1 > model.l1


def test_a_saved_rule_reloads_as_its_absolute_value(Z, tmp_path):
    model = lc.SemiNMF(8, l1="rms:0.05").fit(Z)
    model.save(tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    assert cfg["l1"] == pytest.approx(model.l1) and cfg["l1_rule"] == "rms:0.05"
    back = lc.load_dictionary(tmp_path / "d")
    assert back.l1 == pytest.approx(model.l1) and back.l1_rule is None  # absolute from here on
    assert torch.equal(back.encode(Z), model.encode(Z))
    assert SAE.load_from_disk(tmp_path / "d").cfg.l1_rule == "rms:0.05"


def test_online_learner_resolves_the_rule_on_its_start_rows(Z):
    online = lc.OnlineSemiNMF(8, l1="rms:0.05", batch_size=200, init_rows=4096).fit(Z)
    full = lc.SemiNMF(8, l1="rms:0.05").fit(Z)
    assert online.l1 == pytest.approx(full.l1, rel=1e-6)  # the start rows are all 1,200 rows here
    assert online.config.l1 == "rms:0.05" and online.l1_rule == "rms:0.05"


def test_nmf_and_random_take_rules_too(Z):
    assert lc.RandomDictionary(8, l1="rms:0.05").fit(Z).l1 == pytest.approx(lc.SemiNMF(8, l1="rms:0.05").fit(Z).l1)
    nmf = lc.NMF(8, l1="active:3", max_iter=100).fit(Z.abs())
    assert _active(nmf.encode(Z.abs())) == pytest.approx(3, rel=0.1)


def test_training_sae_resolves_the_rule_on_its_first_batch(Z):
    sae = SemiNMFTrainingSAE(SemiNMFTrainingSAEConfig(d_in=32, d_sae=8, l1_rule="rms:0.05"))
    from sae_lens.saes.sae import TrainStepInput

    batch = Z[:300]
    sae.training_forward_pass(TrainStepInput(sae_in=batch, coefficients={}, dead_neuron_mask=None,
                                             n_training_steps=0, is_logging_step=False))
    assert sae.cfg.l1 == pytest.approx(0.05 * rms_norm(batch), rel=1e-6)
    assert sae.cfg.get_inference_sae_cfg_dict()["l1_rule"] == "rms:0.05"


def test_cli_accepts_rules(tmp_path, Z):
    np.save(tmp_path / "Z.npy", Z.numpy())
    out = tmp_path / "dico"
    main(["fit", str(tmp_path / "Z.npy"), "--n-concepts", "8", "--l1", "rms:0.05", "--out", str(out)])
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["l1"] == pytest.approx(0.05 * rms_norm(Z), rel=1e-6) and cfg["l1_rule"] == "rms:0.05"


def test_bad_rules_are_named(Z):
    with pytest.raises(ValueError, match="every row of Z is zero"):
        lc.SemiNMF(4, l1="rms:0.1").fit(torch.zeros(20, 8))
    with pytest.raises(ValueError, match="only K=8"):
        lc.SemiNMF(8, l1="active:9")
    with pytest.raises(ValueError, match="k > 0"):
        lc.SemiNMF(8, l1="active:0")
    with pytest.raises(ValueError, match="k > 0"):
        L1Rule.active(-1)
    with pytest.raises(ValueError, match="rms:<fraction>"):
        lc.SemiNMF(8, l1="rms=0.1")
    with pytest.raises(ValueError, match="fraction f >= 0"):
        lc.SemiNMF(8, l1="rms:-1")
    with pytest.raises(ValueError, match="finds no l1 in range"):
        # random unit atoms on positive data: even a tiny l1 leaves fewer than 7 of 8 codes active
        lc.RandomDictionary(8, l1="active:7.9").fit(Z.abs())
    with pytest.raises(ValueError, match="set l1=0.5"):
        SemiNMFTrainingSAEConfig(d_in=32, d_sae=8, l1_rule="0.5")
    with pytest.raises(RuntimeError, match="call .fit"):
        _ = lc.SemiNMF(8, l1="rms:0.1").l1_


def test_resolve_l1_without_a_probe_supports_rms_only(Z):
    assert resolve_l1("rms:0.1", Z, 8) == pytest.approx(0.1 * rms_norm(Z))
    assert resolve_l1(0.3, Z, 8) == 0.3
    with pytest.raises(ValueError, match="'rms:' only"):
        resolve_l1("active:2", Z, 8)
