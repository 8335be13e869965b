"""Every CLI failure is one line naming the problem and the fix; exit status 2 for bad input, 1 otherwise;
--debug (or LMM_CONCEPTS_DEBUG=1) adds the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmm_concepts.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, what it printed on stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, capsys.readouterr().err


def test_a_failure_is_one_line_and_its_exit_status_tells_bad_input_from_a_failure(tmp_path, capsys):
    code, err = cli(capsys, "extract", "--token", "dog", "--data", str(tmp_path / "nowhere.jsonl"))
    assert code == 2 and err == f"lmm-concepts extract: error: --data {str(tmp_path / 'nowhere.jsonl')!r}: no such file or folder\n"
    code, err = cli(capsys, "extract", "--token", "dog", "--batch_size", "1.5")  # argparse: one line too, no usage
    assert code == 2 and err.count("\n") == 1 and "invalid int value: '1.5' (see lmm-concepts extract --help)" in err
    code, err = cli(capsys, "nope")
    assert code == 2 and err.count("\n") == 1 and "unknown command 'nope'" in err
    (tmp_path / "d.jsonl").write_text('{"id": 1, "image": "a.png", "captions": ["a dog"]}\n')
    code, err = cli(capsys, "extract", "--token", "dog", "--data", str(tmp_path / "d.jsonl"), "--model",
                    "tests._extract_models:broken_lmm")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("lmm-concepts extract: error: RuntimeError: the GPU caught fire (rerun with --debug")


def test_a_real_process_exits_with_the_status_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    (tmp_path / "d.jsonl").write_text('{"id": 1, "image": "a.png", "captions": ["a dog"]}\n')
    args = ["extract", "--token", "dog", "--data", str(tmp_path / "d.jsonl"), "--model",
            "tests._extract_models:broken_lmm"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("LMM_CONCEPTS_DEBUG", None)
    plain = subprocess.run([sys.executable, "-m", "lmm_concepts", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("lmm-concepts extract: error: RuntimeError")
    monkeypatch.delenv("LMM_CONCEPTS_DEBUG", raising=False)
    code, err = cli(capsys, *args, "--debug")
    assert code == 1 and "Traceback" in err and "broken_lmm" in err
    monkeypatch.setenv("LMM_CONCEPTS_DEBUG", "1")
    code, err = cli(capsys, *args)
    assert code == 1 and "Traceback" in err and err.endswith("RuntimeError: the GPU caught fire\n")
