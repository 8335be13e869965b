import subprocess
import sys

import pytest

import lmm_concepts


def test_public_api_is_declared():
    for name in lmm_concepts.__all__:
        assert hasattr(lmm_concepts, name), name


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "lmm_concepts", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "lmm-concepts" in out.stdout


def test_unknown_command_is_named():
    from lmm_concepts.cli import main

    with pytest.raises(SystemExit, match="unknown command 'nope'"):
        main(["nope"])
