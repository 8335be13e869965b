"""`lmm-concepts --help` is fast because it imports neither torch nor sae-lens (checked in sys.modules, not timed),
and a bare `import lmm_concepts` still lets `SAE.load_from_disk` load our dictionaries, whichever package is
imported first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmm_concepts.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sae_lens", "transformer_lens", "transformers", "numpy")

CLI_THEN_MODULES = (
    f"HEAVY = {HEAVY!r}"
    + """
import json, runpy, sys
sys.argv = ["lmm-concepts", *sys.argv[1:]]
try:
    runpy.run_module("lmm_concepts", run_name="__main__")
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""
)


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def last_json(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in COMMANDS)], ids=" ".join)
def test_help_imports_no_heavy_package(args):
    result = last_json(python(CLI_THEN_MODULES, *args))
    assert result == {"code": 0, "heavy": []}


def test_a_bare_import_is_light_and_the_public_api_resolves_on_use():
    code = (
        f"import json, sys; import lmm_concepts as lc; light = [m for m in {HEAVY!r} if m in sys.modules]; "
        "names = [n for n in lc.__all__ if getattr(lc, n, None) is None]; "
        "print(json.dumps({'light': light, 'missing': names, 'dir': sorted(set(lc.__all__) - set(dir(lc))), "
        "'semi_nmf': lc.SemiNMF.__module__}))"
    )
    result = last_json(python(code))
    assert result == {"light": [], "missing": [], "dir": [], "semi_nmf": "lmm_concepts.dictionary.semi_nmf"}


def test_subpackages_are_attributes_of_a_bare_import_as_they_were_of_an_eager_one():
    """`lc.grounding.WordFilter` right after `import lmm_concepts` (a fresh process: no other test imported it)."""
    code = (
        "import json; import lmm_concepts as lc; "
        "print(json.dumps({'word_filter': lc.grounding.WordFilter.__module__, 'store': lc.extraction.store.__name__, "
        "'missing': hasattr(lc, 'no_such_submodule')}))"
    )
    result = last_json(python(code))
    assert result == {"word_filter": "lmm_concepts.grounding.words", "store": "lmm_concepts.extraction.store",
                      "missing": False}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import lmm_concepts as lc
    from tests._dictionary_fixtures import planted

    folders = {}
    for name, learner in {
        "semi_nmf": lc.SemiNMF(3, l1=0.2),
        "pca": lc.PCA(3),
        "kmeans": lc.KMeans(3),
    }.items():
        folders[name] = tmp_path_factory.mktemp(name)
        learner.fit(planted()).save(folders[name])
    return folders


LOAD = """
import sys
from sae_lens import SAE
folders, classes = sys.argv[1::2], sys.argv[2::2]
if {sae_lens_first}:  # sae-lens alone does not know our architectures: the check below is not vacuous
    try:
        SAE.load_from_disk(folders[0])
        raise SystemExit("sae-lens loaded a semi_nmf folder without lmm_concepts")
    except KeyError as err:
        assert "semi_nmf" in str(err)
import lmm_concepts
for folder, cls in zip(folders, classes):
    sae = SAE.load_from_disk(folder)
    assert type(sae).__name__ == cls, (folder, type(sae))
print("loaded")
"""


@pytest.mark.parametrize("sae_lens_first", [False, True], ids=["lmm_concepts first", "sae_lens first"])
def test_sae_lens_loads_our_dictionaries_whichever_package_is_imported_first(sae_lens_first, saved):
    code = LOAD.format(sae_lens_first=sae_lens_first)
    if not sae_lens_first:  # move `import lmm_concepts` above `from sae_lens import SAE`
        code = "import lmm_concepts\n" + code
    classes = {"semi_nmf": "SemiNMFSAE", "pca": "PCASAE", "kmeans": "KMeansSAE"}
    args = [str(x) for name, folder in saved.items() for x in (folder, classes[name])]
    out = python(code, *args)
    assert out.returncode == 0 and out.stdout.strip() == "loaded", out.stderr


def test_a_lazy_export_named_like_its_submodule_stays_the_export(tmp_path):
    # `extraction.extract` (the function in the module of that name): importing the module first must not hide it
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\nfrom lmm_concepts._lazy import lazy_exports\n"
        "if TYPE_CHECKING:\n    from pkg.extract import extract\n"
        "__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())\n"
    )
    (pkg / "extract.py").write_text("def extract():\n    return 'the function'\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pkg.extract; from pkg import extract; import pkg; "
        "print(extract(), pkg.extract(), 'extract' in dir(pkg), hasattr(pkg, 'nothing'))"
    )
    out = python(code, str(tmp_path))
    assert out.returncode == 0 and out.stdout.split() == [
        "the",
        "function",
        "the",
        "function",
        "True",
        "False",
    ], out.stderr


def test_the_registry_and_the_dtype_table_list_their_entries_without_importing_them():
    # fit --help, sweep --learner, the demo's methods and the report's labels read these without torch
    code = (
        "import json, sys; from lmm_concepts.dictionary.registry import learners; "
        "from lmm_concepts._dtypes import SAFETENSORS_CODES; from lmm_concepts.demo.config import default_methods; "
        "e = learners(); "
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], "
        "'learner_modules': sorted(m for m in sys.modules if m.startswith('lmm_concepts.dictionary.') "
        "and m != 'lmm_concepts.dictionary.registry'), "
        "'labels': [x.label for x in e.values()], 'demo': default_methods(), 'dtypes': list(SAFETENSORS_CODES)}))"
    )
    result = last_json(python(code))
    assert result["heavy"] == [] and result["learner_modules"] == []
    assert result["labels"][:3] == ["Semi-NMF", "Semi-NMF (online)", "PCA"]
    assert result["demo"] == ["semi_nmf", "pca", "kmeans", "simple", "sae", "random"]
    assert result["dtypes"] == ["float32", "float16", "bfloat16", "float64"]
