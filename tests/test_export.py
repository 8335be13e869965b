"""Dashboard exports: files checked against the fields Neuronpedia's and SAEDashboard's viewers read, values checked
against the full dictionary's codes, hostile captions kept inert, bad inputs named."""

from __future__ import annotations

import base64
import io
import json
import shutil
from numbers import Number

import pytest
import torch
from PIL import Image

import lmm_concepts as lc
from lmm_concepts.cli import main
from lmm_concepts.export import FORMATS, safe_json
from lmm_concepts.export.features import ConceptFeature, FeatureSet, TopSample
from lmm_concepts.report.inputs import RunInputError
from tests._report_fixtures import EVIL
from tests._run_fixtures import MODEL, make_run

pytestmark = pytest.mark.usefixtures("one_thread")

# ------------------------------------------------------------------------------------------ the viewers' fields
# Neuronpedia: what its feature dashboard reads from one feature of a batch file (the webapp's `InternalFeature` and
# `InternalFeatureActivation` types, hijohnnylin/neuronpedia); it maps over every list, so each must be present.
NP_BATCH = {"model_id": str, "layer": int, "sae_set": str, "features": list}
NP_FEATURE = {
    "feature_index": int, "activations": list, "neg_str": list, "neg_values": list, "pos_str": list,
    "pos_values": list, "frac_nonzero": Number, "freq_hist_data_bar_heights": list, "freq_hist_data_bar_values": list,
    "logits_hist_data_bar_heights": list, "logits_hist_data_bar_values": list, "decoder_weights_dist": list,
    "n_prompts_total": int, "n_tokens_in_prompt": int, "dataset": str, "neuron_alignment_indices": list,
    "neuron_alignment_values": list, "neuron_alignment_l1": list, "correlated_neurons_indices": list,
    "correlated_neurons_l1": list, "correlated_neurons_pearson": list, "correlated_features_indices": list,
    "correlated_features_l1": list, "correlated_features_pearson": list,
}  # fmt: skip
NP_ACTIVATION = {"tokens": list, "values": list, "bin_min": Number, "bin_max": Number, "bin_contains": Number}
# the hover template indexes one list at the other's positions: these pairs must have one length
NP_PARALLEL = [("neg_str", "neg_values"), ("pos_str", "pos_values"),
               ("freq_hist_data_bar_heights", "freq_hist_data_bar_values"),
               ("logits_hist_data_bar_heights", "logits_hist_data_bar_values"),
               ("correlated_features_indices", "correlated_features_pearson")]
# SAEDashboard: `SaeVisData.load_json` reads _SaeVisData (feature_data_dict, feature_stats); the dataclasses' fields
# (jbloomAus/SAEDashboard: feature_data.py, components.py, utils_fns.py)
SD_FEATURE = {"feature_tables_data": dict, "acts_histogram_data": dict, "logits_table_data": dict,
              "logits_histogram_data": dict, "sequence_data": dict, "prompt_data": dict, "dfa_data": dict}
SD_HISTOGRAM = {"bar_heights": list, "bar_values": list, "tick_vals": list, "title": (str, type(None))}
SD_LOGITS = {"bottom_token_ids": list, "bottom_logits": list, "top_token_ids": list, "top_logits": list}
SD_SEQUENCE = {"original_index": int, "qualifying_token_index": int, "token_ids": list, "feat_acts": list,
               "loss_contribution": list, "token_logits": list, "top_token_ids": list, "top_logits": list,
               "bottom_token_ids": list, "bottom_logits": list}
SD_TABLES = {f"{p}_{s}": list for p, suffixes in [("neuron_alignment", ("indices", "values", "l1")),
                                                  ("correlated_neurons", ("indices", "pearson", "cossim")),
                                                  ("correlated_features", ("indices", "pearson", "cossim")),
                                                  ("correlated_b_features", ("indices", "pearson", "cossim"))]
             for s in suffixes}
SD_STATS = {"max": list, "frac_nonzero": list, "skew": list, "kurtosis": list, "quantile_data": list,
            "quantiles": list, "ranges_and_precisions": list}


def fields(obj: dict, schema: dict, where: str) -> None:
    for key, kind in schema.items():
        assert key in obj, f"{where}: missing {key!r}"
        assert isinstance(obj[key], kind) and not (kind is int and isinstance(obj[key], bool)), \
            f"{where}.{key}: {type(obj[key]).__name__}, expected {kind}"


def check_neuronpedia(batch: dict) -> None:
    fields(batch, NP_BATCH, "batch")
    for f in batch["features"]:
        where = f"feature {f.get('feature_index')}"
        fields(f, NP_FEATURE, where)
        for a, b in NP_PARALLEL:
            assert len(f[a]) == len(f[b]), f"{where}: {a} and {b} differ in length"
        assert all(isinstance(s, str) for s in f["pos_str"] + f["neg_str"])
        assert all(isinstance(x, Number) for x in f["pos_values"] + f["neg_values"] + f["freq_hist_data_bar_values"])
        assert 0 <= f["frac_nonzero"] <= 1
        for a in f["activations"]:
            fields(a, NP_ACTIVATION, f"{where} activation")
            assert len(a["tokens"]) == len(a["values"]) > 0 and all(isinstance(t, str) for t in a["tokens"])


def check_saedashboard(data: dict) -> None:
    fields(data, {"feature_data_dict": dict, "feature_stats": dict}, "file")
    fields(data["feature_stats"], SD_STATS, "feature_stats")
    for key, fd in data["feature_data_dict"].items():
        assert key.isdigit()
        fields(fd, SD_FEATURE, f"feature {key}")
        fields(fd["feature_tables_data"], SD_TABLES, f"feature {key} tables")
        for h in ("acts_histogram_data", "logits_histogram_data"):
            fields(fd[h], SD_HISTOGRAM, f"feature {key} {h}")
            assert len(fd[h]["bar_heights"]) == len(fd[h]["bar_values"])
        fields(fd["logits_table_data"], SD_LOGITS, f"feature {key} logits")
        t = fd["logits_table_data"]
        assert len(t["top_token_ids"]) == len(t["top_logits"]) and len(t["bottom_token_ids"]) == len(t["bottom_logits"])
        for group in fd["sequence_data"]["seq_group_data"]:
            fields(group, {"title": str, "seq_data": list}, f"feature {key} group")
            for seq in group["seq_data"]:
                fields(seq, SD_SEQUENCE, f"feature {key} sequence")
                n = len(seq["token_ids"])
                assert all(len(seq[k]) == n for k in ("feat_acts", "token_logits", "loss_contribution", "top_logits"))
        fields(fd["prompt_data"], SD_SEQUENCE, f"feature {key} prompt")


CHECKS = {"neuronpedia": ("batch-0.json", check_neuronpedia), "saedashboard": ("feature_data.json", check_saedashboard)}


# ---------------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def test_schema_checks_reject_what_the_viewers_cannot_read():
    with pytest.raises(AssertionError, match="missing 'pos_values'"):
        check_neuronpedia({"model_id": "m", "layer": 0, "sae_set": "s", "features": [
            {k: ([] if t is list else 0 if t is not str else "") for k, t in NP_FEATURE.items() if k != "pos_values"}]})
    with pytest.raises(AssertionError, match="differ in length"):
        check_neuronpedia({"model_id": "m", "layer": 0, "sae_set": "s", "features": [
            {**{k: ([] if t is list else 0 if t is not str else "") for k, t in NP_FEATURE.items()},
             "freq_hist_data_bar_values": [0.5, 1.5, 2.5], "freq_hist_data_bar_heights": [1, 2]}]})


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_files_hold_what_the_viewers_read(run, tmp_path, fmt):
    out = tmp_path / fmt
    main(["export", str(run.explanations), "--format", fmt, "--out", str(out), "--n_samples", "3", *MODEL])
    name, check = CHECKS[fmt]
    raw = (out / name).read_text()
    check(json.loads(raw))
    side = json.loads((out / "lmm_concepts.json").read_text())
    assert side["format"] == fmt and side["fields"] == FORMATS[fmt].FIELDS and side["images"] == "inline"
    # the dataset's captions hold a script: inert in the files (escaped), intact once parsed
    side_raw = (out / "lmm_concepts.json").read_text()
    assert EVIL not in side_raw and "<" not in side_raw and "<" not in raw
    samples = [s for f in side["features"].values() for s in f["samples"]]
    assert samples and all(EVIL in s["captions"][0] for s in samples)
    image = Image.open(io.BytesIO(base64.b64decode(samples[0]["image"])))
    assert image.size[0] > 0


def test_exported_activations_are_the_full_dictionarys_codes(run, tmp_path):
    out = lc.export_dashboard(run.explanations, format="neuronpedia", out=tmp_path / "np", model=run.model,
                              n_samples=3, images="reference")
    batch = json.loads((out / "batch-0.json").read_text())
    side = json.loads((out / "lmm_concepts.json").read_text())
    V = lc.load_dictionary(run.dictionary).encode(run.store.layer("final"))
    ids = run.store.sample_ids
    for f in batch["features"]:
        k = f["feature_index"]
        samples = side["features"][str(k)]["samples"]
        assert len(f["activations"]) == len(samples) >= 1
        expected = V[:, k].topk(len(samples)).values
        for act, sample, value in zip(f["activations"], samples, expected.tolist(), strict=True):
            stored = act["values"][act["qualifying_token_index"]]
            assert stored == pytest.approx(value, abs=1e-3) == pytest.approx(V[ids.index(sample["sample_id"]), k])
            assert sample["image"] == str(run.store.image_path(sample["sample_id"]))
        active = V[:, k] != 0
        assert f["frac_nonzero"] == pytest.approx(float(active.float().mean()))
        assert sum(f["freq_hist_data_bar_heights"]) == int(active.sum())
        assert f["pos_values"] == sorted(f["pos_values"], reverse=True) and f["neg_values"] == sorted(f["neg_values"])
    assert batch["layer"] == 2 and batch["model_id"] == "depalm"  # after the last of 2 blocks; the model's family


def test_masking_rows_of_w_dec_changes_lasso_codes():
    """SAEDashboard's FeatureMaskingContext keeps a batch's rows of W_dec; a lasso encoder then answers another
    problem. Two correlated atoms sharing a direction: keeping one changes its code wherever the other was active."""
    g = torch.Generator().manual_seed(0)
    shared = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    W = torch.nn.functional.normalize(torch.stack([shared + 0.5 * torch.randn(16, generator=g) for _ in range(4)]), dim=1)
    V = torch.rand(200, 4, generator=g) * (torch.rand(200, 4, generator=g) < 0.5)
    Z = V @ W
    dico = lc.SemiNMF(4, l1=0.05, seed=0).fit(Z)
    sae = dico.to_sae()
    full = sae.encode(Z).detach()
    sae.W_dec = torch.nn.Parameter(sae.W_dec.data[[0, 1]])
    masked = sae.encode(Z).detach()
    changed = (masked[:, 0] - full[:, 0]).abs() > 1e-4 * (1 + full[:, 0].abs())
    assert changed.float().mean() > 0.2


def test_writers_keep_hostile_tokens_inert(tmp_path):
    top = TopSample(EVIL, 0, 1.0, ["a", EVIL], [5, 6], [0.1, 1.0], [0.0, 0.2], 1, EVIL, [EVIL], None)
    f = ConceptFeature(0, [EVIL], [top], [EVIL], [6], [1.0], ["b"], [7], [-1.0], [0.5], [1], [0.0], [3], 0.5, 1.0)
    fs = FeatureSet([f], torch.tensor([[1.0], [0.0]]), "blocks.0.hook_resid_post", 2, 2, "data")
    for module in FORMATS.values():
        for obj in module.files(fs, "m", "s").values():
            text = safe_json(obj)
            assert EVIL not in text and "<" not in text and ">" not in text
            assert json.loads(text) == obj  # the same strings once parsed
    check_neuronpedia(FORMATS["neuronpedia"].files(fs, "m", "s").popitem()[1])
    check_saedashboard(FORMATS["saedashboard"].files(fs, "m", "s").popitem()[1])


def test_export_bad_input_names_both_sides(run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(run.explanations, moved)
    meta = json.loads((moved / "explanations.json").read_text())
    meta["store"] = str(tmp_path / "nowhere")
    (moved / "explanations.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match=rf"explanations 'moved' \({moved}\): the store {tmp_path / 'nowhere'}"
                                            r".*missing"):
        main(["export", str(moved), "--out", str(tmp_path / "x"), *MODEL])
    other = make_run(tmp_path / "other", seed=1)  # a store of another model
    with pytest.raises(SystemExit, match=r"grounded on a store of HookedLMM \(depalm\).*weights "
                                            rf"{run.store.manifest['model']['weights_digest']}.*{other.store.path} "
                                            rf"belongs to .*weights {other.store.manifest['model']['weights_digest']}"):
        main(["export", str(run.explanations), "--store", str(other.store.path), "--out", str(tmp_path / "y"), *MODEL])
    with pytest.raises(RunInputError, match="the model given is .* but the store .* was extracted with"):
        lc.export_dashboard(run.explanations, format="saedashboard", out=tmp_path / "z", model=other.model)
