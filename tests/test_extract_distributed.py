"""`extract` under a 2-rank gloo process group: batches dealt round-robin, one merged store equal to a single run."""

from __future__ import annotations

import json

import torch
from _dist_workers import extract_worker, run_ranks

import lmm_concepts as lc
from tests._extract_fixtures import ScriptedLMM, coded_image

SCRIPTS = {
    0: ["Ġa", "Ġdog", "Ġon", "Ġthe", "Ġgrass"],
    1: ["Dog", "."],
    2: ["Ġa", "Ġhotdog"],
    3: ["Ġa", "Ġcat"],
    4: ["Ġa", "Ġ", "dog"],
    5: ["Ġa", "Ġdog"],
    6: ["Ġthe", "Ġdog", "."],
}
CAPTIONS = {0: "A dog on grass.", 1: "dog", 2: "A dog eats.", 3: "A cat.", 4: "a DOG", 5: "dog and cat", 6: "dog"}
LAYERS = [0, "final"]


def items():
    return [(f"s{c}", coded_image(c), [CAPTIONS[c]]) for c in SCRIPTS]


def test_two_ranks_extract_the_single_process_store(tmp_path):
    single = lc.extract(ScriptedLMM(SCRIPTS), items(), "dog", layers=LAYERS, out=tmp_path / "single", batch_size=2,
                        progress=False)
    part = tmp_path / "two_ranks"  # 4 batches of 2: rank 0 writes batches 0 and 2, rank 1 batches 1 and 3
    codes = run_ranks(extract_worker, 2, tmp_path, str(part))
    assert codes == [0, 0], [p.read_text() for p in tmp_path.glob("error*.txt")]
    dist = lc.RepresentationStore.open(part)
    assert dist.complete and dist.sample_ids == single.sample_ids == ["s0", "s1", "s4", "s5", "s6"]
    for layer in dist.layers:
        assert torch.equal(dist.layer(layer), single.layer(layer))
    assert dist.metadata == single.metadata and dist.rejections == single.rejections
    m1, m2 = (json.loads((s.path / "manifest.json").read_text()) for s in (dist, single))
    assert m1 == m2
    assert not (part / "parts").exists()  # the per-rank parts were merged and removed


def test_a_second_run_is_refused_by_every_rank_while_the_store_is_locked(tmp_path):
    from lmm_concepts.extraction.lock import StoreLock

    part = tmp_path / "locked"
    with StoreLock(part):  # another run holds the store
        codes = run_ranks(extract_worker, 2, tmp_path, str(part))
    assert codes == [1, 1]
    errors = [(tmp_path / f"error{r}.txt").read_text() for r in range(2)]
    assert errors[0].startswith("StoreLockedError") and "being written by another extraction" in errors[0]
    assert "rank 0 could not open the store" in errors[1]
    assert sorted(p.name for p in part.iterdir()) == []  # nothing written; the lock file went with its holder


def test_ranks_that_keep_nothing_all_raise_and_leave_no_store(tmp_path):
    part = tmp_path / "empty"
    codes = run_ranks(extract_worker, 2, tmp_path, str(part), "eats")  # in a caption, never generated
    assert codes == [1, 1]
    for r in range(2):
        assert "no sample kept for 'eats'" in (tmp_path / f"error{r}.txt").read_text()
    assert not part.exists()  # the empty store went, and the folder the run made with it
