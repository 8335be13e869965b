"""Long fits tell where they are: every iteration (SemiNMF) or epoch (OnlineSemiNMF) is a log record with its
objective, and `progress=True` (the CLI's default; the library's is off) draws a tqdm bar."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

import lmm_concepts as lc
from lmm_concepts._progress import resolve_progress
from lmm_concepts.cli import main
from tests._dictionary_fixtures import planted


def objectives(caplog, logger: str, pattern: str) -> list[float]:
    return [
        float(m.group(1)) for r in caplog.records if r.name == logger and (m := re.search(pattern, r.message))
    ]


def test_semi_nmf_logs_every_iteration_and_its_outcome(caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="lmm_concepts")
    model = lc.SemiNMF(4, l1=0.2, coarse_rows=0).fit(planted())
    logged = objectives(caplog, "lmm_concepts.dictionary.semi_nmf", r"iteration \d+, objective (\S+)")
    assert len(logged) == model.n_iter_ and np.allclose(logged, model.history_, rtol=1e-5)
    infos = [r.message for r in caplog.records if r.levelno == logging.INFO and "SemiNMF K=4" in r.message]
    assert (
        infos[0].endswith("started")
        and model.stop_reason_ in infos[-1]
        and f"after {model.n_iter_}" in infos[-1]
    )
    assert "objective=" not in capsys.readouterr().err  # no bar unless asked: the library's default is off


def test_semi_nmf_draws_a_bar_when_asked(capsys):
    model = lc.SemiNMF(4, l1=0.2, coarse_rows=0, progress=True).fit(planted())
    err = capsys.readouterr().err
    assert "SemiNMF K=4 on 240x16" in err and f"{model.n_iter_}it" in err and "objective=" in err
    assert "progress" not in model.get_params()  # not a fitted parameter: never saved


def test_online_semi_nmf_logs_each_epoch_in_the_data_units(caplog, capsys):
    caplog.set_level(logging.INFO, logger="lmm_concepts")
    Z = planted() * 1e4  # fitted as Z/s inside: the reported objective is still the data's
    model = lc.OnlineSemiNMF(4, l1=2e3, batch_size=64, max_epochs=3, tol=0, progress=True).fit(Z)
    logged = objectives(caplog, "lmm_concepts.dictionary.online", r"epoch \d+/3, objective (\S+)")
    assert len(logged) == 3 and np.allclose(logged, model.history_, rtol=1e-5)
    assert "max_epochs=3 reached after 3 epochs (12 mini-batches)" in caplog.records[-1].message
    err = capsys.readouterr().err
    assert "12/12" in err and "batch/s" in err


def test_the_cli_shows_bars_and_log_records_and_restores_the_library_default(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LMM_CONCEPTS_PROGRESS", raising=False)
    np.save(tmp_path / "Z.npy", planted().numpy())
    main(["fit", str(tmp_path / "Z.npy"), "--n-concepts", "3", "--l1", "0.2", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert "objective=" in err and re.search(r"SemiNMF K=3 on 240x16: converged.*objective \S+ after", err)
    assert resolve_progress(None) is False and logging.getLogger("lmm_concepts").handlers == []
    monkeypatch.setenv("LMM_CONCEPTS_PROGRESS", "0")  # bars off, log records still shown
    main(["fit", str(tmp_path / "Z.npy"), "--n-concepts", "3", "--l1", "0.2", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert "objective=" not in err and "SemiNMF K=3 on 240x16: converged" in err


@pytest.mark.parametrize("progress", [None, False])
def test_an_explicit_false_or_the_library_default_draws_nothing(progress, capsys):
    lc.OnlineSemiNMF(3, l1=0.2, batch_size=120, max_epochs=1, progress=progress).fit(planted())
    assert "batch" not in capsys.readouterr().err
