"""`extract` and `RepresentationStore` driven by a scripted model: kept/rejected samples, exact positions, store
files, resuming, and every bad input of the issue."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import lmm_concepts as lc
from lmm_concepts._memory import rss_anon_mb
from lmm_concepts.extraction.store import committed_batches
from lmm_concepts.extraction.writer import image_file_name
from lmm_concepts.models.interface import FINAL_HOOK
from tests._extract_fixtures import ScriptedLMM, coded_image

SCRIPTS = {
    0: ["Ġa", "Ġdog", "Ġon", "Ġthe", "Ġgrass"],  # kept, word at generated index 1
    1: ["Dog", "."],  # kept, word is the first generated token
    2: ["Ġa", "Ġhotdog"],  # "hotdog" is not "dog": not generated
    3: ["Ġa", "Ġcat"],  # ground truth has no dog: rejected before captioning
    4: ["Ġa", "Ġ", "dog"],  # whitespace-only piece before the word
    5: ["Ġa", "Ġcat", "<eos>", "Ġdog"],  # the word only after the end of text
}
CAPTIONS = {0: "A dog on grass.", 1: "dog", 2: "A dog eats.", 3: "A cat.", 4: "a DOG", 5: "dog and cat"}


def items():
    return [(f"s{c}", coded_image(c), [CAPTIONS[c]], {"attributes": {"code": c}}) for c in SCRIPTS]


@pytest.fixture
def model():
    return ScriptedLMM(SCRIPTS)


def test_selection_positions_and_store(model, tmp_path):
    store = lc.extract(model, items(), "dog", layers=[0, -1, "final"], out=tmp_path / "s", batch_size=4, progress=False)
    assert store.layers == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", FINAL_HOOK]
    assert store.sample_ids == ["s0", "s1", "s4"]
    assert [(r["sample_id"], r["reason"]) for r in store.rejections] == [
        ("s2", "not_generated"), ("s3", "not_in_captions"), ("s5", "not_generated"),
    ]  # fmt: skip
    assert store.funnel == {"images": 6, "unreadable": 0, "not_in_captions": 1, "not_generated": 2, "kept": 3}
    # prompt lengths: code 0 and 4 -> 2 visual + 1 token, code 1 -> 2 visual + 3 tokens (left padding differs)
    meta = {m["sample_id"]: m for m in store.metadata}
    assert (meta["s0"]["generated_index"], meta["s0"]["position"]) == (1, 3 + 1 - 1)
    assert (meta["s1"]["generated_index"], meta["s1"]["position"]) == (0, 5 - 1)
    assert (meta["s4"]["generated_index"], meta["s4"]["position"]) == (2, 3 + 2 - 1)
    assert meta["s0"]["attributes"] == {"code": 0} and meta["s0"]["captions"] == ["A dog on grass."]
    assert meta["s1"]["generated"] == "Dog." and meta["s1"]["token_str"] == "Dog"
    for k, name in enumerate(store.layers):
        Z = store.layer(name)
        assert Z.shape == (3, 4) and Z.dtype == torch.float32
        assert Z[:, 0].tolist() == [k] * 3  # the vector of the right hook
        assert Z[:, 1].tolist() == [meta[i]["position"] for i in store.sample_ids]  # at the stored position
        assert Z[:, 3].tolist() == [0, 1, 4]  # of the right image
    assert store.images(["s1"])[0].getpixel((0, 0)) == (1, 0, 0)  # in-memory image copied into the store
    assert store.manifest["complete"] and store.manifest["word"] == "dog" and store.manifest["position"] == "predicts"
    with safe_open(str(tmp_path / "s" / "layers" / f"{FINAL_HOOK}.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("activations"), store.layer("final"))  # a valid safetensors file
    assert not (tmp_path / "s" / "parts").exists()


def test_at_rule_reads_the_word_token_itself(model, tmp_path):
    store = lc.extract(model, items(), "dog", layers=["final"], out=tmp_path, position="at", progress=False)
    Z = store.layer("final")
    assert Z[:, 2].tolist() == [model.tokenizer.convert_tokens_to_ids(t) for t in ("Ġdog", "Dog", "dog")]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_store_dtypes_and_memory_map(model, tmp_path, dtype):
    store = lc.extract(model, items(), "dog", layers=[1], out=tmp_path, dtype=dtype, progress=False)
    Z = store.layer(1)
    assert Z.dtype == getattr(torch, dtype) and Z.shape == (3, 4)
    assert store.layer("blocks.1.hook_resid_post").shape == (3, 4)
    with pytest.raises(KeyError, match="not in this store"):
        store.layer(0)


def test_jsonl_dataset_keeps_extras_and_records_unreadable_images(model, tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for c in (0, 1, 4):
        coded_image(c).save(tmp_path / "img" / f"{c}.png")
        rows.append({"id": f"w{c}", "image": f"img/{c}.png", "captions": [CAPTIONS[c]], "attributes": {"c": c}})
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png")
    rows.insert(1, {"id": "bad", "image": "img/bad.png", "captions": ["a dog"], "attributes": {}})
    rows.insert(2, {"id": "gone", "image": "img/missing.png", "captions": ["a dog"], "attributes": {}})
    (tmp_path / "world.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = lc.JsonlCaptions(tmp_path / "world.jsonl")
    store = lc.extract(model, data, "dog", layers=["final"], out=tmp_path / "s", batch_size=2, progress=False)
    assert store.sample_ids == ["w0", "w1", "w4"]
    assert [m["attributes"] for m in store.metadata] == [{"c": 0}, {"c": 1}, {"c": 4}]
    assert {r["sample_id"]: r["reason"] for r in store.rejections} == {"bad": "unreadable", "gone": "unreadable"}
    assert store.images(["w4"])[0].getpixel((0, 0)) == (4, 0, 0)


def test_interrupted_run_resumes_at_the_first_unwritten_batch(tmp_path):
    full = lc.extract(ScriptedLMM(SCRIPTS), items(), "dog", layers=[0, "final"], out=tmp_path / "a", batch_size=2, progress=False)

    crashing = ScriptedLMM(SCRIPTS)
    calls = []

    def generate(images, **kw):
        if len(calls) == 1:
            raise KeyboardInterrupt  # dies in the middle of the second batch
        calls.append(1)
        return ScriptedLMM.generate(crashing, images, **kw)

    crashing.generate = generate
    with pytest.raises(KeyboardInterrupt):
        lc.extract(crashing, items(), "dog", layers=[0, "final"], out=tmp_path / "b", batch_size=2, progress=False)
    assert len(committed_batches(tmp_path / "b")) == 1
    with pytest.raises(RuntimeError, match="incomplete"):
        lc.RepresentationStore.open(tmp_path / "b")
    partial = lc.RepresentationStore.open(tmp_path / "b", allow_incomplete=True)
    assert partial.sample_ids == ["s0", "s1"] and partial.layer("final").shape == (2, 4)

    again = ScriptedLMM(SCRIPTS)
    resumed = lc.extract(again, items(), "dog", layers=[0, "final"], out=tmp_path / "b", batch_size=2, progress=False)
    assert again.generate_calls == [1, 2]  # batches 2 and 3 only; batch 1 was not recomputed
    assert resumed.metadata == full.metadata and resumed.rejections == full.rejections
    for name in full.layers:
        assert torch.equal(resumed.layer(name), full.layer(name))
    # rerunning a complete store recomputes nothing
    idle = ScriptedLMM(SCRIPTS)
    lc.extract(idle, items(), "dog", layers=[0, "final"], out=tmp_path / "b", batch_size=2, progress=False)
    assert idle.generate_calls == [] and idle.forward_calls == []


def test_bad_inputs(model, tmp_path):
    with pytest.raises(ValueError, match="out of range for a model with 2 layers"):
        lc.extract(model, items(), "dog", layers=[2], out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="out of range"):
        lc.extract(model, items(), "dog", layers=[-3], out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="no hook point 'blocks.0.hook_nope'"):
        lc.extract(model, items(), "dog", layers=["blocks.0.hook_nope"], out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"a layer must be an int \(a block index\), 'final' or a hook name, got float 1.5"):
        lc.extract(model, items(), "dog", layers=1.5, out=tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"no hook point 'nonsense': give a block index \(0..1, .* such as \w"):
        lc.extract(model, items(), "dog", layers="nonsense", out=tmp_path / "x", progress=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileExistsError, match="a_file is a file: the output is a folder"):
        lc.extract(model, items(), "dog", out=tmp_path / "a_file", progress=False)
    with pytest.raises(ValueError, match="position must be one of"):
        lc.extract(model, items(), "dog", out=tmp_path / "x", position="after", progress=False)
    with pytest.raises(ValueError, match=r"of 6 images, 0 were unreadable, 5 lacked .* and 1 in their generated"):
        lc.extract(model, items(), "eats", layers=["final"], out=tmp_path / "eats", progress=False)
    lc.extract(model, items(), "dog", layers=["final"], out=tmp_path / "s", progress=False)
    for other in ({"token": "grass"}, {"layers": [0]}, {"position": "at"}):
        args = {"token": "dog", "layers": ["final"], **other}
        with pytest.raises(FileExistsError, match="holds a store for another extraction"):
            lc.extract(model, items(), out=tmp_path / "s", progress=False, **args)
    other_model = ScriptedLMM(SCRIPTS)
    with torch.no_grad():
        other_model.weight.fill_(1.0)
    with pytest.raises(FileExistsError, match="differs in: model"):
        lc.extract(other_model, items(), "dog", layers=["final"], out=tmp_path / "s", progress=False)
    store = lc.extract(other_model, items(), "dog", layers=[0], out=tmp_path / "s", overwrite=True, progress=False)
    assert store.layers == ["blocks.0.hook_resid_post"]


def test_layer_files_are_streamed_in_and_memory_mapped_out(tmp_path):
    from safetensors.torch import load_file

    from lmm_concepts.extraction.shards import read_mmap, write_streamed

    chunks = [torch.full((1000, 1024), float(k)) for k in range(8)]  # 8 × 4 MiB
    write_streamed(tmp_path / "z.safetensors", iter(chunks), 8000, 1024, torch.float32, {"hook_name": "x"})
    del chunks
    before = rss_anon_mb()
    Z = read_mmap(tmp_path / "z.safetensors")
    assert Z.shape == (8000, 1024) and float(Z[::1000, 0].sum()) == sum(range(8))
    assert float(Z.sum()) == 1000 * 1024 * sum(range(8))  # every page read, none copied into anonymous memory
    assert rss_anon_mb() - before < 8
    assert torch.equal(load_file(str(tmp_path / "z.safetensors"))["activations"], Z)  # a valid safetensors file
    Z[0, 0] = -1.0  # copy-on-write: the caller may write, the file keeps its value
    assert float(read_mmap(tmp_path / "z.safetensors")[0, 0]) == 0.0
    with pytest.raises(ValueError, match="wrote 1000 rows, expected 2000"):
        write_streamed(tmp_path / "bad.safetensors", iter([torch.zeros(1000, 4)]), 2000, 4, torch.float32)
    assert not (tmp_path / "bad.safetensors").exists()


def test_store_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl
    import os
    import socket
    import subprocess
    import sys

    from lmm_concepts.extraction.lock import StoreLock, StoreLockedError

    with StoreLock(tmp_path / "s") as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
            StoreLock(tmp_path / "s").acquire()
    assert not (tmp_path / "s" / ".lock").exists()  # released: the file goes with it

    # a filesystem without flock: the record alone decides
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_file = tmp_path / "s" / ".lock"
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))  # a live process
    with pytest.raises(StoreLockedError, match=f"pid {os.getppid()}"):
        StoreLock(tmp_path / "s").acquire()
    lock_file.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))  # a dead one
    with StoreLock(tmp_path / "s"):
        assert f"taking over the lock left by pid {int(dead.stdout)}" in caplog.text


def test_overwrite_deletes_only_what_the_store_wrote(model, tmp_path, monkeypatch):
    from lmm_concepts.errors import ConflictingOutputError

    # `out` is a folder that already holds the user's files, an images/ folder among them
    out = tmp_path / "d"
    (out / "images").mkdir(parents=True)
    coded_image(9).save(out / "images" / "user.png")
    (out / "notes.txt").write_text("mine")
    first = lc.extract(model, items(), "dog", layers=["final"], out=out, batch_size=2, progress=False)
    copied = {p.name for p in (out / "images").iterdir()} - {"user.png"}
    assert len(copied) == 3 and first.manifest["created_dirs"] == ["layers", "parts"]
    # a batch killed after copying its image but before its commit record: the image is still the store's
    real_write_json = lc.extraction.writer.write_json

    def dies_at_commit(path, obj, indent=2):
        if path.name == "batch.json":
            raise KeyboardInterrupt
        return real_write_json(path, obj, indent)

    monkeypatch.setattr(lc.extraction.writer, "write_json", dies_at_commit)
    with pytest.raises(KeyboardInterrupt):
        lc.extract(model, [("late", coded_image(0), ["a dog"])], "dog", layers=[0], out=tmp_path / "k",
                   progress=False)
    monkeypatch.undo()
    assert len(list((tmp_path / "k" / "images").iterdir())) == 1

    again = lc.extract(model, items(), "cat", layers=["final"], out=out, overwrite=True, progress=False)
    assert again.sample_ids == ["s3", "s5"]
    names = {p.name for p in (out / "images").iterdir()}
    assert "user.png" in names and not names & copied and len(names) == 3  # the old store's copies went
    assert (out / "notes.txt").read_text() == "mine" and len(again.images(["s3", "s5"])) == 2
    lc.extract(model, [("x", coded_image(1), ["dog"])], "dog", layers=[1], out=tmp_path / "k", overwrite=True,
               progress=False)
    assert [p.name for p in (tmp_path / "k" / "images").iterdir()] == [image_file_name("x")]

    # a JSONL dataset whose folder is also the output: its images are never the store's
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for c in (0, 1):
        coded_image(c).save(ds / "images" / f"{c}.png")
    rows = [{"id": f"j{c}", "image": f"images/{c}.png", "captions": [CAPTIONS[c]]} for c in (0, 1)]
    (ds / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = lc.JsonlCaptions(ds / "data.jsonl")
    lc.extract(model, data, "dog", layers=["final"], out=ds, progress=False)
    store = lc.extract(model, data, "dog", layers=[0], out=ds, overwrite=True, progress=False)
    assert sorted(p.name for p in (ds / "images").iterdir()) == ["0.png", "1.png"]
    assert store.images(["j0"])[0].getpixel((0, 0)) == (0, 0, 0)

    # the store never replaces files of its names that it did not write, overwrite or not
    for name, make in (("metadata.jsonl", lambda p: p.write_text("{}\n")), ("parts", lambda p: p.mkdir()),
                       ("manifest.json", lambda p: p.write_text('{"name": "my project"}'))):
        folder = tmp_path / f"taken_{name}"
        folder.mkdir()
        make(folder / name)
        with pytest.raises(ConflictingOutputError, match=name):
            lc.extract(model, items(), "dog", out=folder, overwrite=True, progress=False)
        assert sorted(p.name for p in folder.iterdir()) == [name]


def test_duplicate_ids_in_memory_are_refused_like_jsonl(model, tmp_path):
    from lmm_concepts.errors import InputError

    dup = [("a", coded_image(0), ["a dog"]), ("b", coded_image(1), ["dog"]), ("a", coded_image(4), ["a dog"])]
    with pytest.raises(InputError, match=r"sample id 'a' occurs more than once \(items 0 and 2\)"):
        lc.extract(model, dup, "dog", out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="'a' occurs more than once"):  # read once: checked as it is read
        list(lc.IterableCaptions(iter(dup)))
    with pytest.raises(ValueError, match="'a' occurs more than once"):
        list(lc.IterableCaptions(iter(dup)).iter_from(2))


def test_a_changed_dataset_with_the_same_ids_is_refused_naming_what_changed(model, tmp_path):
    import os

    from lmm_concepts.errors import ConflictingOutputError

    lc.extract(model, items(), "dog", out=tmp_path / "s", batch_size=2, progress=False)
    assert (tmp_path / "s" / "dataset_index.jsonl").is_file()
    changed = items()
    changed[1] = ("s1", coded_image(1).rotate(90).point(lambda v: 255 - v), changed[1][2], changed[1][3])  # pixels
    changed[4] = ("s4", changed[4][1], ["a DOG, again"], changed[4][3])  # a caption
    with pytest.raises(ConflictingOutputError, match=r"differs in: dataset.*2 changed: 's1', 's4'"):
        lc.extract(model, changed, "dog", out=tmp_path / "s", batch_size=2, progress=False)
    with pytest.raises(ConflictingOutputError, match=r"1 added: 'new'"):
        lc.extract(model, [*items(), ("new", coded_image(0), ["dog"])], "dog", out=tmp_path / "s", batch_size=2,
                   progress=False)

    # files: their size and modification time stand for their content (no image is read to check)
    (tmp_path / "img").mkdir()
    for c in (0, 1):
        coded_image(c).save(tmp_path / "img" / f"{c}.png")
    rows = [{"id": f"w{c}", "image": f"img/{c}.png", "captions": [CAPTIONS[c]]} for c in (0, 1)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    lc.extract(model, lc.JsonlCaptions(tmp_path / "d.jsonl"), "dog", out=tmp_path / "j", progress=False)
    lc.extract(model, lc.JsonlCaptions(tmp_path / "d.jsonl"), "dog", out=tmp_path / "j", progress=False)  # same
    coded_image(4).save(tmp_path / "img" / "1.png")
    st = os.stat(tmp_path / "img" / "1.png")
    os.utime(tmp_path / "img" / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse clocks
    with pytest.raises(ConflictingOutputError, match=r"1 changed: 'w1';"):
        lc.extract(model, lc.JsonlCaptions(tmp_path / "d.jsonl"), "dog", out=tmp_path / "j", progress=False)

    # a world split is a pure function of its config
    from lmm_concepts.data.synthetic import SyntheticWorld
    from lmm_concepts.extraction.extract import dataset_identity

    a, _ = dataset_identity(lc.IterableCaptions(SyntheticWorld(seed=0, n_train=4, n_test=1).split("train")))
    b, _ = dataset_identity(lc.IterableCaptions(SyntheticWorld(seed=1, n_train=4, n_test=1).split("train")))
    assert a["content_digest"] and a["content_digest"] != b["content_digest"] and a["ids_digest"] is None


def test_a_refused_start_leaves_the_folder_as_it_was_and_the_corrected_rerun_runs(model, tmp_path):
    from lmm_concepts.errors import InputError

    out = tmp_path / "s"
    for bad, match in (({"batch_size": 0}, r"batch_size must be a whole number ≥ 1, got 0 \(--batch_size\)"),
                       ({"batch_size": 1.5}, r"batch_size .* got 1.5"),
                       ({"max_new_tokens": True}, "max_new_tokens"),
                       ({"num_workers": -1}, "num_workers"),
                       ({"token": "zebra"}, r"no ground-truth caption of the 6 samples holds 'zebra'"),
                       ({"token": "dogs"}, "holds 'dogs'"),
                       ({"token": "Do"}, "holds 'Do'")):
        with pytest.raises(InputError, match=match):
            lc.extract(model, items(), **{"token": "dog", **bad}, out=out, progress=False)
        assert not out.exists(), bad  # nothing written, no folder made
    # a word the captions hold but the model never generates: computed, found empty, removed with a clear error
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"no sample kept for 'eats'.*The model generated, e.g.: 'a hotdog'"):
        lc.extract(model, items(), "eats", out=out, batch_size=2, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert len(lc.extract(model, items(), "dog", out=out, batch_size=2, progress=False)) == 3  # the corrected rerun
    plural = [("p", coded_image(0), ["two dogs"])]
    with pytest.raises(InputError, match=r"its plural does: pass plural=True"):
        lc.extract(model, plural, "dog", out=tmp_path / "p", progress=False)


def test_files_a_killed_merge_left_half_written_are_removed_by_the_rerun(model, tmp_path):
    out = tmp_path / "s"
    lc.extract(model, items(), "dog", layers=[0, "final"], out=out, batch_size=2, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["complete"] = False  # as if SIGKILLed during the final merge, leaving temporary files
    (out / "manifest.json").write_text(json.dumps(manifest))
    orphans = [out / "layers" / ".blocks.0.hook_resid_post.safetensors.k2j4_x.tmp", out / ".metadata.jsonl.a1b2c3.tmp",
               out / ".manifest.json.zz99.tmp", out / "images" / f".{image_file_name('s1')}.q1w2.tmp"]
    for p in orphans:
        p.write_bytes(b"half")
    (out / "images" / ".user.png.q1w2.tmp").write_bytes(b"not the store's")
    store = lc.extract(model, items(), "dog", layers=[0, "final"], out=out, batch_size=2, progress=False)
    assert store.complete and len(store) == 3 and not any(p.exists() for p in orphans)
    assert sorted(p.name for p in (out / "layers").iterdir()) == ["blocks.0.hook_resid_post.safetensors",
                                                                 f"{FINAL_HOOK}.safetensors"]
    assert (out / "images" / ".user.png.q1w2.tmp").exists()  # never a file the store did not write
