"""`extract` on a tiny random `HookedLMM`: the position rule against the model's own logits, generated-only
matching, a SIGKILLed CLI run resumed to the same store, bounded memory, and the CLI end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import lmm_concepts as lc
from lmm_concepts._memory import peak_rss_anon_mb
from lmm_concepts.cli import main as cli_main
from lmm_concepts.models.interface import FINAL_HOOK
from tests._extract_models import noise_images, tiny_lmm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return tiny_lmm()


@pytest.fixture(scope="module")
def world(model, tmp_path_factory):
    """A JSONL dataset of noise images whose captions all hold `word`, the word the model generates most."""
    folder = tmp_path_factory.mktemp("world")
    images = noise_images(16)
    texts = model.generate(images, max_new_tokens=6).texts
    word = Counter(w for t in texts for w in set(t.split())).most_common(1)[0][0]
    rows = []
    for n, im in enumerate(images):
        im.save(folder / f"{n}.png")
        rows.append({"id": f"img{n}", "image": f"{n}.png", "captions": [f"a {word} here"], "attributes": {"n": n}})
    (folder / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    n_kept = sum(word in t.split() for t in texts)
    assert 3 <= n_kept < len(images), (word, texts)  # some kept, some rejected: both paths run
    return folder, word


def test_predicts_position_ranks_the_word_first_under_unembed(model, world, tmp_path):
    folder, word = world
    data = lc.JsonlCaptions(folder / "data.jsonl")
    store = lc.extract(model, data, word, ["final", -1, 0], tmp_path, batch_size=8, max_new_tokens=6, progress=False)
    assert store.layers == [FINAL_HOOK, "blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]
    Z = store.layer("final")
    assert Z.shape == (len(store), model.cfg.d_model) and Z.dtype == torch.float32
    logits = model.unembed(Z[:, None, :].to(model.cfg.device))[:, 0]
    word_id = model.tokenizer.convert_tokens_to_ids(word)
    assert logits.argmax(-1).tolist() == [word_id] * len(store)
    # "final" is the final norm applied to the last block's output, at the same positions
    torch.testing.assert_close(model.ln_final(store.layer(-1)[:, None, :])[:, 0], Z, rtol=1e-5, atol=1e-5)
    for m in store.metadata:  # positions count the visual tokens; the word is the generated token at position + 1
        assert m["token_id"] == word_id and m["matched"] == word and word in m["generated"].split()
        assert m["position"] == model.lmm_cfg.n_visual_tokens + 1 + m["generated_index"] - 1  # 4 visual + "w0"
    assert store.funnel["not_generated"] == 16 - len(store) and store.funnel["not_in_captions"] == 0
    assert store.images([store.sample_ids[0]])[0].size == (16, 16)


def test_early_layers_stop_the_forward_pass_early_with_the_same_vectors(model, world, tmp_path):
    folder, word = world
    data = lc.JsonlCaptions(folder / "data.jsonl")
    full = lc.extract(model, data, word, ["final", 0], tmp_path / "a", batch_size=8, max_new_tokens=6, progress=False)
    early = lc.extract(model, data, word, [0], tmp_path / "b", batch_size=8, max_new_tokens=6, progress=False)
    assert early.sample_ids == full.sample_ids
    torch.testing.assert_close(early.layer(0), full.layer(0), rtol=0, atol=0)


def test_a_word_the_tokenizer_cannot_produce_is_refused_before_any_work(model, world, tmp_path):
    folder, _ = world
    with pytest.raises(ValueError, match="cannot produce 'zebra'"):
        lc.extract(model, lc.JsonlCaptions(folder / "data.jsonl"), "zebra", ["final"], tmp_path / "z", progress=False)
    assert not (tmp_path / "z").exists()


def test_only_generated_tokens_are_searched(model, world, tmp_path):
    folder, word = world
    data = lc.JsonlCaptions(folder / "data.jsonl")
    store = lc.extract(model, data, word, ["final"], tmp_path, prompt=f"{word} {word}", max_new_tokens=6, progress=False)
    n_prompt = model.lmm_cfg.n_visual_tokens + 2
    assert all(m["position"] >= n_prompt - 1 for m in store.metadata)
    assert all(word not in r["detail"].split() for r in store.rejections)  # word in the prompt only: rejected


def test_peak_memory_does_not_grow_with_the_dataset(model, tmp_path):
    # every caption holds the word, so every image is captioned; half of them are kept
    images = noise_images(12)
    word = Counter(w for t in model.generate(images, max_new_tokens=3).texts for w in t.split()).most_common(1)[0][0]

    def run(n: int, out: str):
        items = ((f"i{k}", images[k % 12], [word]) for k in range(n))
        lc.extract(model, items, word, [0, "final"], tmp_path / out, batch_size=12, max_new_tokens=3, progress=False)

    run(12, "warm")  # first-call allocations (thread pools, caches) out of the way
    small = peak_rss_anon_mb(lambda: run(24, "small"))
    large = peak_rss_anon_mb(lambda: run(240, "large"))
    print(f"peak RssAnon: {small:.1f} MiB (24 images), {large:.1f} MiB (240 images)")
    assert large - small < 8, f"peak RssAnon {small:.1f} MiB for 24 images, {large:.1f} MiB for 240"


def test_cli_killed_mid_run_resumes_to_the_uninterrupted_store(model, world, tmp_path, caplog):
    folder, word = world
    args = [
        "extract", "--model", "tests._extract_models:slow_tiny_lmm", "--data", str(folder / "data.jsonl"),
        "--token", word, "--layers", "final", "-1", "--batch_size", "2", "--max_new_tokens", "6",
        "--dtype", "bfloat16", "--out", str(tmp_path / "killed"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmm_concepts", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    target = tmp_path / "killed" / "parts" / "000002" / "batch.json"
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = lc.RepresentationStore.open(tmp_path / "killed", allow_incomplete=True)
    n_before = len(list((tmp_path / "killed" / "parts").glob("*/batch.json")))
    assert 3 <= n_before < 8 and not partial.complete
    assert json.loads((tmp_path / "killed" / ".lock").read_text())["pid"] == proc.pid  # left by the killed run

    cli_main(args)  # the same command, in this process: continues at the first unwritten batch
    assert f"taking over the lock left by pid {proc.pid}" in caplog.text  # the stale lock, taken over with a message
    assert not (tmp_path / "killed" / ".lock").exists()
    resumed = lc.RepresentationStore.open(tmp_path / "killed")
    data = lc.JsonlCaptions(folder / "data.jsonl")
    whole = lc.extract(
        model, data, word, ["final", -1], tmp_path / "whole", batch_size=2, max_new_tokens=6, dtype="bfloat16",
        progress=False,
    )  # fmt: skip
    assert resumed.manifest["model"] == whole.manifest["model"]  # same weights digest in both processes
    assert resumed.metadata == whole.metadata and resumed.rejections == whole.rejections
    for name in whole.layers:
        a, b = resumed.layer(name), whole.layer(name)
        assert a.dtype == torch.bfloat16 and torch.equal(a, b), name
    assert resumed.metadata[0]["attributes"] == {"n": int(resumed.sample_ids[0][3:])}


def test_a_second_run_into_the_same_store_is_refused_while_the_first_runs(model, world, tmp_path):
    """Two real processes: the second is refused at once (the lock names the first), the first ends complete."""
    folder, word = world
    out = tmp_path / "shared"
    args = [
        sys.executable, "-m", "lmm_concepts", "extract", "--data", str(folder / "data.jsonl"), "--token", word,
        "--layers", "final", "--batch_size", "1", "--max_new_tokens", "6", "--out", str(out),
    ]  # fmt: skip
    gate = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "LMM_TEST_GATE": str(gate)}
    first = subprocess.Popen([*args, "--model", "tests._extract_models:gated_tiny_lmm"], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE)
    deadline = time.time() + 240
    lock = out / ".lock"
    while not (lock.exists() and lock.read_text()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, first.stderr.read().decode()[-2000:]
    assert json.loads(lock.read_text())["pid"] == first.pid
    # the second run (not gated) reaches the store while the first holds it: refused, nothing of the first touched
    second = subprocess.run([*args, "--model", "tests._extract_models:tiny_lmm"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert second.returncode == 1, second.stderr
    assert f"being written by another extraction (pid {first.pid}" in second.stderr
    assert first.poll() is None and json.loads(lock.read_text())["pid"] == first.pid
    gate.touch()  # let the first run go on
    assert first.wait(timeout=240) == 0, first.stderr.read().decode()[-2000:]
    store = lc.RepresentationStore.open(out)
    whole = lc.extract(model, lc.JsonlCaptions(folder / "data.jsonl"), word, ["final"], tmp_path / "whole",
                       batch_size=1, max_new_tokens=6, progress=False)
    assert store.metadata == whole.metadata and torch.equal(store.layer("final"), whole.layer("final"))
    assert store.manifest["n_kept"] == len(whole) > 0 and not lock.exists()
