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


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from lmm_concepts._io import write_json

    mask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
