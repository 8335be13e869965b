"""Every CLI failure is one line naming the problem and the fix; exit status 2 for bad input, 1 otherwise;
--debug (or LMM_CONCEPTS_DEBUG=1) adds the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmm_concepts.cli import main
from lmm_concepts.models.interface import FINAL_HOOK

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


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny store and a dictionary saved for its final layer (what `ground` and `evaluate` read)."""
    from collections import Counter

    import lmm_concepts as lc
    from tests._extract_models import noise_images, tiny_lmm

    model, images = tiny_lmm(), noise_images(8)
    word = Counter(w for t in model.generate(images, max_new_tokens=5).texts for w in set(t.split())).most_common(1)[0][0]
    root = tmp_path_factory.mktemp("built")
    store = lc.extract(model, [(f"i{n}", im, [f"a {word}"]) for n, im in enumerate(images)], word, ["final"],
                       root / "store", max_new_tokens=5, progress=False)
    lc.PCA(2).fit(store.layer("final")).save(root / "dico", hook_name=FINAL_HOOK)
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_damaged_files_are_named_with_the_fix(built, tmp_path, capsys):
    import json

    ground = ["ground", "--store", str(built / "store"), "--out", str(tmp_path / "ex"), "--model",
              "tests._extract_models:tiny_lmm"]
    truncated = _copy(built / "dico", tmp_path / "truncated")
    weights = truncated / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad_json = _copy(built / "dico", tmp_path / "bad_json")
    (bad_json / "cfg.json").write_text('{"d_in": 32,')
    dicts = [truncated, bad_json]
    for key, value in (("d_sae", 5), ("d_in", 7), ("architecture", "nonexistent")):
        folder = _copy(built / "dico", tmp_path / key)
        cfg = json.loads((folder / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps({**cfg, key: value}))
        dicts.append(folder)
    for folder in dicts:
        code, err = cli(capsys, *ground, "--dictionary", str(folder))
        assert code == 2 and err.count("\n") == 1, err
        assert f"cannot load the dictionary in {folder} (" in err and "fit it again" in err

    store = _copy(built / "store", tmp_path / "store_truncated")
    layer = store / "layers" / f"{FINAL_HOOK}.safetensors"
    layer.write_bytes(layer.read_bytes()[:-64])
    code, err = cli(capsys, *ground[:-6], "--store", str(store), "--dictionary", str(built / "dico"), *ground[-4:])
    assert code == 2 and f"{layer} is damaged (truncated" in err and "extracted again" in err
    store = _copy(built / "store", tmp_path / "store_rows")
    lines = (store / "metadata.jsonl").read_text().splitlines()
    (store / "metadata.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    code, err = cli(capsys, *ground[:-6], "--store", str(store), "--dictionary", str(built / "dico"), *ground[-4:])
    assert code == 2 and f"metadata.jsonl holds {len(lines) - 1} rows but {store / 'manifest.json'} counts" in err


def test_options_are_named_with_the_fix(built, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, err = cli(capsys, "ground", "--store", str(built / "store"), "--dictionary", str(built / "dico"),
                    "--out", str(tmp_path / "a_file"))
    assert code == 2 and err.endswith(f"--out {tmp_path / 'a_file'} is a file: the output is a folder; choose another --out\n")
    evaluate = ["evaluate", "--explanations", str(tmp_path / "ex"), "--dictionary", str(built / "dico"),
                "--test_store", str(built / "store"), "--out", str(tmp_path / "ev"), "--r", "2"]
    code, err = cli(capsys, *evaluate, "--metrics", "clipscore")
    assert code == 2 and "--metrics clipscore / mas_words need a CLIP model: give --clip <local open_clip folder>" in err
    code, err = cli(capsys, *evaluate, "--metrics", "bertscore")
    assert code == 2 and "give --bert <local Hugging Face encoder folder>" in err
    code, err = cli(capsys, "demo", "--out", str(tmp_path / "demo"), "--n_concepts", "2")
    assert code == 2 and "--n_concepts must be at least 3 (each test image is scored by its top-3 concepts)" in err
    assert not (tmp_path / "demo").exists()
