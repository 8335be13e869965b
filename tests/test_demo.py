"""`lmm-concepts demo`: bad input refused before anything slow runs."""

from __future__ import annotations

import pytest

from lmm_concepts.cli import main
from lmm_concepts.demo import DemoConfig, DemoInputError, run_demo
from lmm_concepts.demo.pipeline import check_inputs


def _check(**kw):
    return run_demo(DemoConfig(**kw), stages=[("check inputs", check_inputs)])


def test_word_must_be_a_shape_noun(tmp_path):
    with pytest.raises(DemoInputError, match="not a shape noun") as err:
        _check(out=str(tmp_path / "o"), word="dog")
    for noun in ["circle", "square", "triangle", "star", "cross"]:
        assert noun in str(err.value)
    assert _check(out=str(tmp_path / "o"), word="Circles").word == "circle"  # plural and case accepted
    with pytest.raises(SystemExit, match="not a shape noun"):
        main(["demo", "--out", str(tmp_path / "p"), "--word", "dog"])


def test_existing_output_folder_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(DemoInputError, match="--overwrite"):
        _check(out=str(out))
    assert (out / "results.json").exists()  # nothing lost
    _check(out=str(out), overwrite=True)
    assert out.is_dir() and not any(out.iterdir())
    # --overwrite never wipes a folder that isn't a demo's
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("precious")
    with pytest.raises(DemoInputError, match="does not look like a demo folder"):
        _check(out=str(other), overwrite=True)
    assert (other / "chapter1.tex").read_text() == "precious"


def test_unknown_method_is_named(tmp_path):
    with pytest.raises(DemoInputError, match="nmf2"):
        _check(out=str(tmp_path / "o"), methods=["semi_nmf", "nmf2"])


def test_missing_or_corrupt_weights_say_how_to_retrain(tmp_path):
    with pytest.raises(SystemExit, match="train-toy"):
        main(["demo", "--out", str(tmp_path / "o"), "--toy", str(tmp_path / "no-such-toy")])
    corrupt = tmp_path / "corrupt-toy"
    corrupt.mkdir()
    for name in ["tokenizer.json", "clip.json", "clip.safetensors", "lm.json", "lm.safetensors",
                 "connector.json", "connector.safetensors"]:
        (corrupt / name).write_bytes(b"\x00garbage")
    with pytest.raises(SystemExit, match="train-toy"):
        main(["demo", "--out", str(tmp_path / "p"), "--toy", str(corrupt)])


def test_overwrite_replaces_only_a_previous_demos_outputs(tmp_path):
    proj = tmp_path / "proj"
    (proj / "code").mkdir(parents=True)
    (proj / "results.json").write_text("{}")
    (proj / "code" / "thesis.tex").write_text("precious")
    (proj / "notes.txt").write_text("mine")
    with pytest.raises(DemoInputError, match=r"it holds code, notes.txt, which the demo did not write.*--replace"):
        _check(out=str(proj), overwrite=True)
    assert (proj / "code" / "thesis.tex").read_text() == "precious" and (proj / "results.json").exists()
    with pytest.raises(DemoInputError, match="holds notes.txt"):
        _check(out=str(proj), overwrite=True, replace=["code"])  # still refused: nothing deleted
    assert (proj / "code" / "thesis.tex").exists()
    with pytest.raises(DemoInputError, match="names of entries directly inside"):
        _check(out=str(proj), overwrite=True, replace=["../elsewhere"])
    _check(out=str(proj), overwrite=True, replace=["code", "notes.txt"])  # told which files to replace
    assert proj.is_dir() and not any(proj.iterdir())

    # a previous demo's outputs go, the folder stays; a demo still writing its stores keeps them
    for name in ("reps/train", "world/images", "explanations/pca", "evaluation/pca"):
        (proj / name).mkdir(parents=True)
    for name in ("results.json", "panels.json", "report.html"):
        (proj / name).write_text("{}")
    from lmm_concepts.extraction.lock import StoreLock, StoreLockedError

    with StoreLock(proj / "reps" / "train"), pytest.raises(StoreLockedError):
        _check(out=str(proj), overwrite=True)
    assert (proj / "results.json").exists() and (proj / "world" / "images").is_dir()
    _check(out=str(proj), overwrite=True)
    assert not any(proj.iterdir())


def test_l1_option_is_checked_before_anything_runs(tmp_path):
    with pytest.raises(DemoInputError, match="--l1: l1 must be a number"):
        _check(out=str(tmp_path / "o"), l1="lots")
    with pytest.raises(DemoInputError, match="only K=20"):
        _check(out=str(tmp_path / "o"), l1="active:30")
    for ok in ("cv", "0.5", "rms:0.01", "active:10"):
        _check(out=str(tmp_path / ok.replace(":", "_")), l1=ok)


def test_cv_l1_keeps_the_candidate_that_recovers_on_held_out_train_rows():
    import torch

    from lmm_concepts.demo.l1_choice import choose_l1

    # colour is carried by one direction each; l1 = 10 x the RMS norm zeroes every code (AUROC 0.5 on both folds)
    gen = torch.Generator().manual_seed(0)
    red = torch.arange(60) % 2 == 0
    Z = 0.1 * torch.randn(60, 4, generator=gen)
    Z[red, 0] += 3.0
    Z[~red, 1] += 3.0
    attrs = [{"color": "red" if r else "blue"} for r in red]
    l1, record = choose_l1(Z, attrs, 2, grid=("rms:10", "rms:0.01"))
    scores = {c["rule"]: c["score"] for c in record["candidates"]}
    assert record["chosen"] == "rms:0.01" and scores["rms:10"] == 0.5 and scores["rms:0.01"] > 0.99
    assert l1 == pytest.approx(0.01 * Z.square().sum(1).mean().sqrt().item(), rel=1e-5)


def test_an_active_l1_rule_is_resolved_on_train_as_semi_nmf_resolves_it():
    from pathlib import Path
    from types import SimpleNamespace

    import torch

    import lmm_concepts as lc
    from lmm_concepts.demo.pipeline import DemoState, set_l1

    # "active:k" passes check_inputs, so the l1 stage must resolve it (it needs a fit to measure sparsity)
    Z = torch.randn(80, 6, generator=torch.Generator().manual_seed(0))
    train = SimpleNamespace(layer=lambda name: Z, metadata=[{"attributes": {}}] * 80)
    state = DemoState(cfg=DemoConfig(out="unused", l1="active:3", n_concepts=6), folder=Path("unused"), stores={"train": train})
    set_l1(state)
    assert state.results["l1_choice"] == {"rule": "active:3"}
    assert state.results["l1"] == pytest.approx(lc.SemiNMF(6, l1="active:3").fit(Z).l1_)
    assert float(state.cfg.l1) == pytest.approx(state.results["l1"], rel=1e-5)


def test_cv_l1_on_too_few_training_rows_is_bad_input():
    import torch

    from lmm_concepts.demo.l1_choice import choose_l1
    from lmm_concepts.errors import InputError

    with pytest.raises(InputError, match="at least 4 training samples .* --n_train"):
        choose_l1(torch.randn(3, 4), [{"color": "red"}] * 3, 2)
    with pytest.raises(InputError, match="no attribute value could be scored .* --l1 <number>"):
        choose_l1(torch.randn(8, 4), [{"color": "red"}] * 8, 2)  # every sample red: nothing to separate
