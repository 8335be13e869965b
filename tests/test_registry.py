"""The learner registry: a learner registered in one call shows up in `fit`, `sweep`, the demo and the report, and
leaves no trace once removed; options a learner does not take are refused, not ignored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmm_concepts as lc
from lmm_concepts.cli import main
from lmm_concepts.demo.config import METHODS, DemoConfig, default_methods
from lmm_concepts.demo.pipeline import DemoState, check_inputs, make_dictionary
from lmm_concepts.dictionary.kmeans import PrototypeDictionary
from lmm_concepts.dictionary.registry import (
    SAEClasses,
    architectures,
    get_learner,
    learner_for_architecture,
    learners,
    register_learner,
    registered_learner,
)
from lmm_concepts.errors import InputError
from lmm_concepts.metrics.command import make_learner
from lmm_concepts.report.render import _MethodView
from tests._dictionary_fixtures import planted
from tests._ground_fixtures import concept_vectors, planted_store


class FirstRows(PrototypeDictionary):
    """A learner made up for the test: the prototypes are K rows of Z, from row `offset` on."""

    def __init__(
        self,
        n_concepts: int,
        *,
        offset: int = 0,
        activation="inverse_distance",
        device=None,
        dtype=torch.float32,
    ):
        super().__init__(n_concepts, activation=activation, device=device, dtype=dtype)
        self.offset = offset

    def fit(self, Z):
        Z = self._as_tensor(Z, fitting=True)
        self.W_dec = Z[self.offset : self.offset + self.n_concepts].clone()
        return self


@pytest.fixture
def first_rows():
    with registered_learner("first_rows", FirstRows, label="First rows", demo=True) as entry:
        yield entry
    assert "first_rows" not in learners()  # nothing leaks into the other tests


def test_builtin_entries_state_each_fact_once():
    names = list(learners())
    assert names == ["semi_nmf", "semi_nmf_online", "pca", "kmeans", "simple", "nmf", "sae", "random"]
    assert list(METHODS) == ["semi_nmf", "pca", "kmeans", "simple", "sae", "random"]
    for entry in learners().values():
        # read from the class, so they cannot disagree with it
        assert entry.signed == entry.cls.signed_codes and entry.architecture == entry.cls.architecture
    assert [n for n, e in learners().items() if e.signed] == ["pca"]
    assert [n for n, e in learners().items() if e.streaming] == ["semi_nmf_online"]
    takes_l1 = [n for n, e in learners().items() if e.takes("l1")]
    assert takes_l1 == ["semi_nmf", "semi_nmf_online", "nmf", "random"]
    assert not get_learner("simple").takes("seed") and get_learner("pca").options == ("solver", "seed")
    # a plain SAE loads into the learner that introduced its architecture; sae-lens's own ones into SAEDictionary
    assert (
        learner_for_architecture("semi_nmf") is lc.SemiNMF and learner_for_architecture("kmeans") is lc.KMeans
    )
    assert learner_for_architecture("standard") is None
    from sae_lens.registry import get_sae_class

    assert get_sae_class("pca")[0] is get_learner("pca").sae.sae


def test_a_registered_learner_appears_everywhere(first_rows, tmp_path, capsys, monkeypatch):
    assert first_rows.options == ("offset", "activation") and not first_rows.signed

    # fit: among --method's choices, and fitted, saved and loaded back as itself
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0 and "first_rows" in capsys.readouterr().out
    Z = planted()
    np.save(tmp_path / "Z.npy", Z.numpy())
    main(
        [
            "fit",
            str(tmp_path / "Z.npy"),
            "--method",
            "first_rows",
            "--n-concepts",
            "3",
            "--out",
            str(tmp_path / "d"),
        ]
    )
    dico = lc.load_dictionary(tmp_path / "d")
    assert isinstance(dico, FirstRows) and torch.equal(dico.W_dec, Z[:3])
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "fit",
                str(tmp_path / "Z.npy"),
                "--method",
                "first_rows",
                "--l1",
                "0.5",
                "--out",
                str(tmp_path / "e"),
            ]
        )
    assert exit_.value.code == 2 and "does not take --l1" in capsys.readouterr().err

    # sweep: runs with it
    U = concept_vectors()
    stores = {
        "train": planted_store(U, n_per_concept=6, seed=2)[0],
        "test": planted_store(U, n_per_concept=3, seed=5)[0],
    }
    monkeypatch.setattr(lc.RepresentationStore, "open", classmethod(lambda cls, path: stores[str(path)]))
    main(
        [
            "sweep",
            "--over",
            "k",
            "--ks",
            "2",
            "3",
            "--train_store",
            "train",
            "--test_store",
            "test",
            "--out",
            str(tmp_path / "sweep"),
            "--learner",
            "first_rows",
            "--n_words",
            "3",
            "--model",
            "tests._ground_fixtures:tiny_model",
        ]
    )
    res = lc.SweepResults.load(tmp_path / "sweep")
    assert res.column("k") == [2, 3] and all(e > 0 for e in res.column("train/relative_error"))

    # demo: a default method, accepted by --methods and built with the demo's settings it takes
    assert default_methods()[-1] == "first_rows" and DemoConfig(out="x").methods == default_methods()
    cfg = DemoConfig(out=str(tmp_path / "demo"), methods=["first_rows", "semi_nmf"], seed=3)
    check_inputs(DemoState(cfg=cfg, folder=tmp_path / "demo"))
    assert isinstance(make_dictionary("first_rows", cfg), FirstRows)

    # report: titled by its label
    assert _MethodView("first_rows", {}, None).label == "First rows"


def test_a_removed_learner_is_gone(tmp_path, capsys):
    with registered_learner("first_rows_2", FirstRows):
        assert "first_rows_2" in learners()
    assert "first_rows_2" not in learners() and "first_rows_2" not in default_methods()
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "first_rows_2" not in capsys.readouterr().out
    cfg = DemoConfig(out=str(tmp_path / "demo"), methods=["first_rows_2"])
    with pytest.raises(InputError, match="unknown method.*first_rows_2.*choose among semi_nmf"):
        check_inputs(DemoState(cfg=cfg, folder=tmp_path / "demo"))


def test_a_name_taken_by_another_class_is_refused():
    with pytest.raises(InputError, match="already registered to SemiNMF"):
        with registered_learner("semi_nmf", FirstRows):
            pass
    assert get_learner("semi_nmf").cls is lc.SemiNMF


def test_sweep_passes_or_refuses_each_option():
    # nmf takes l1 (it used to be dropped silently) and a seed (which k_sweep's seed stability needs)
    nmf = make_learner("nmf", 3, l1=0.5, seed=4)
    assert isinstance(nmf, lc.NMF) and nmf.l1 == 0.5 and nmf.seed == 4
    assert make_learner("nmf", 3).l1 == lc.NMF(3).l1  # not given: the learner's own default
    assert make_learner("semi_nmf", 3, seed=7).seed == 7
    with pytest.raises(InputError, match=r"pca learner does not take --l1 \(--l1 is taken by semi_nmf, "):
        make_learner("pca", 3, l1=1.0)
    with pytest.raises(InputError, match="simple learner does not take --seed"):
        make_learner("simple", 3, seed=1)
    with pytest.raises(InputError, match="unknown --learner 'ica'"):
        make_learner("ica", 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learner", "pca", "--l1", "2"], "pca learner does not take --l1"),
        (["--learner", "simple", "--ks", "2", "--n_seeds", "2"], "simple learner is deterministic"),
    ],
)
def test_sweep_command_refuses_an_option_before_any_work(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "sweep",
                "--train_store",
                str(tmp_path / "none"),
                "--test_store",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "out"),
                *extra,
            ]
        )
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _OtherConfig:
    """Stands for a sae-lens config class: only its architecture name is read."""

    @classmethod
    def architecture(cls) -> str:
        return "first_rows_arch"


#: SAE classes whose config names another architecture than FirstRows exports to ("kmeans")
MISMATCHED_SAE = SAEClasses(object, _OtherConfig)


def test_a_learner_named_by_strings_is_imported_and_checked_on_first_use():
    target = f"{FirstRows.__module__}:FirstRows"
    with registered_learner("first_rows_lazy", target, label="Lazy rows") as entry:
        assert entry.target == target and entry.label == "Lazy rows" and not entry.has_sae
        assert entry.cls is FirstRows and entry.options == ("offset", "activation")
    with registered_learner("nowhere", "tests.no_such_module:Learner") as entry:
        with pytest.raises(
            InputError, match=r"learner 'nowhere': class 'tests.no_such_module:Learner' cannot be"
        ):
            entry.cls  # noqa: B018 -- resolving is what is checked
    with registered_learner("not_a_learner", "collections:OrderedDict") as entry:
        with pytest.raises(InputError, match="OrderedDict has no `architecture`"):
            entry.cls  # noqa: B018
    with pytest.raises(
        InputError, match="learner 'x': class 'FirstRows': name it as \"package.module:Name\""
    ):
        register_learner("x", "FirstRows")
    assert "x" not in learners()
    # the same class under its string and as an object is the same learner: no name clash
    with registered_learner(
        "semi_nmf", lc.SemiNMF, label="Semi-NMF", demo=True, sae=get_learner("semi_nmf").sae
    ):
        assert get_learner("semi_nmf").target == "lmm_concepts.dictionary.semi_nmf:SemiNMF"


def test_sae_classes_must_agree_with_the_learner_and_belong_to_one_learner():
    with pytest.raises(
        InputError, match="architecture is 'kmeans' but its sae classes define 'first_rows_arch'"
    ):
        register_learner("first_rows_sae", FirstRows, sae=MISMATCHED_SAE)
    assert "first_rows_sae" not in learners()
    lazy = f"{FirstRows.__module__}:MISMATCHED_SAE"
    with registered_learner("first_rows_sae", f"{FirstRows.__module__}:FirstRows", sae=lazy):
        assert "first_rows_arch" in architectures()  # read from the SAE config, the learner not needed
        with pytest.raises(InputError, match="architecture is 'kmeans' but its sae classes define"):
            learner_for_architecture("first_rows_arch")
    with registered_learner(
        "pca_again", f"{FirstRows.__module__}:FirstRows", sae="lmm_concepts.dictionary.saes:PCA_CLASSES"
    ):
        with pytest.raises(
            InputError, match="architecture 'pca' is introduced by both learner 'pca' and 'pca_again'"
        ):
            architectures()
    assert set(architectures()) == {"semi_nmf", "pca", "kmeans"}
