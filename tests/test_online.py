"""Online (mini-batch) Semi-NMF: same objective as the full-batch solver, streaming from disk, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lmm_concepts._io import write_json
from lmm_concepts.dictionary.lasso import objective
from lmm_concepts.dictionary.online import OnlineSemiNMF
from lmm_concepts.dictionary.planted import planted_dictionary

L1 = 0.1
FAST = dict(batch_size=250, block_rows=50, init_rows=500, lasso_max_iter=200)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    return planted_dictionary(2000, 32, 8, 2, seed=0)


def full_batch_objective(Z, K, l1):
    """The full-batch solver's objective, converged tightly (the reference)."""
    from lmm_concepts.dictionary.semi_nmf import SemiNMF

    return SemiNMF(K, l1=l1, max_iter=500, tol=1e-8).fit(Z).objective(Z)


def test_online_reaches_the_full_batch_objective(planted, device):
    model = OnlineSemiNMF(8, l1=L1, max_epochs=40, device=device, **FAST).fit(planted.Z.to(device))
    online = model.objective(planted.Z)
    full = full_batch_objective(planted.Z.to(device), 8, L1)
    assert online <= 1.01 * full, (online, full)
    # and it is a real fit: the planted atoms are found
    cos = (planted.W_dec.to(device) @ model.W_dec.T).max(dim=1).values
    assert cos.min() > 0.99
    assert model.history_[-1] < model.history_[0]


def test_objective_is_the_formula(planted):
    model = OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(planted.Z)
    V = model.encode(planted.Z)
    assert (V >= 0).all()
    assert model.objective(planted.Z, batch_size=333) == pytest.approx(objective(planted.Z, V, model.W_dec, L1), rel=1e-6)
    assert (torch.linalg.vector_norm(model.W_dec, dim=1) <= 1 + 1e-5).all()


def test_shards_memmap_and_tensor_give_the_same_dictionary(planted, tmp_path):
    Z = planted.Z
    ref = OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(Z).W_dec
    shards = []
    for i, (a, b) in enumerate([(0, 700), (700, 1300), (1300, 2000)]):
        save_file({"rows": Z[a:b].contiguous()}, tmp_path / f"s{i}.safetensors")
        shards.append(tmp_path / f"s{i}.safetensors")
    from_shards = OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(shards).W_dec
    mm = np.lib.format.open_memmap(tmp_path / "z.npy", mode="w+", dtype=np.float32, shape=tuple(Z.shape))
    mm[:] = Z.numpy()
    mm.flush()
    from_memmap = OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(np.load(tmp_path / "z.npy", mmap_mode="r")).W_dec
    assert torch.equal(from_shards, ref) and torch.equal(from_memmap, ref)


class Crash(Exception):
    pass


class CrashingRows:
    """Rows of Z that raise at the `at`-th read, as a killed job would stop."""

    def __init__(self, Z, at):
        self.Z, self.at, self.reads = Z, at, 0
        self.n_rows, self.d, self.dtype = Z.shape[0], Z.shape[1], Z.dtype

    def read(self, start, stop):
        self.reads += 1
        if self.reads == self.at:
            raise Crash(f"killed at read {self.at}")
        return self.Z[start:stop]


def test_a_crashed_fit_resumes_from_its_checkpoint(planted, tmp_path):
    ckpt = tmp_path / "fit.safetensors"
    opts = dict(l1=L1, max_epochs=4, tol=0.0, checkpoint=ckpt, checkpoint_every=3, **FAST)
    ref = OnlineSemiNMF(8, **{**opts, "checkpoint": None}).fit(planted.Z)
    with pytest.raises(Crash):
        OnlineSemiNMF(8, **opts).fit(CrashingRows(planted.Z, at=60))  # 10 reads for the start, 5 per step
    meta = json.loads(__import__("safetensors").safe_open(str(ckpt), "pt").metadata()["lmm_concepts_online"])
    assert 0 < meta["t"] < 32 and not meta["done"]
    resumed = OnlineSemiNMF(8, **opts).fit(planted.Z)
    assert torch.equal(resumed.W_dec, ref.W_dec)
    assert resumed.history_ == ref.history_
    # a finished fit's checkpoint is a no-op resume; a different fit's checkpoint is refused, naming the difference
    assert torch.equal(OnlineSemiNMF(8, **opts).fit(planted.Z).W_dec, ref.W_dec)
    with pytest.raises(ValueError, match=r"different fit \(differs in \['config'\]"):
        OnlineSemiNMF(8, **{**opts, "l1": 0.2}).fit(planted.Z)


def _planted_store(path, Z, complete=True):
    from lmm_concepts.extraction.shards import write_streamed
    from lmm_concepts.extraction.store import FINAL_HOOK, STORE_FORMAT

    write_streamed(path / "layers" / f"{FINAL_HOOK}.safetensors", [Z[:1000], Z[1000:]], Z.shape[0], Z.shape[1], Z.dtype)
    write_json(path / "manifest.json", {"format": STORE_FORMAT, "complete": complete, "layers": [FINAL_HOOK],
                                        "model": {"n_layers": 1, "d_model": Z.shape[1]}, "dtype": "float32"})


def test_fits_a_representation_store_and_refuses_one_being_written(planted, tmp_path):
    from lmm_concepts.extraction.store import RepresentationStore

    _planted_store(tmp_path / "done", planted.Z)
    ref = OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(planted.Z).W_dec
    store = RepresentationStore.open(tmp_path / "done")
    assert torch.equal(OnlineSemiNMF(8, l1=L1, max_epochs=2, **FAST).fit(store, layer="final").W_dec, ref)
    _planted_store(tmp_path / "writing", planted.Z, complete=False)
    with pytest.raises(RuntimeError, match="incomplete"):
        OnlineSemiNMF(8, l1=L1, **FAST).fit(tmp_path / "writing", layer="final")

    class Rewrite:  # an extraction restarts and rewrites the store while the fit reads it
        def __init__(self):
            self.calls = 0

    model = OnlineSemiNMF(8, l1=L1, max_epochs=3, **FAST)
    rows = store.rows("final")  # the store's public row source
    real_read = rows.read

    def read(start, stop):
        out = real_read(start, stop)
        if start > 0 and not (tmp_path / "done" / "manifest.json").read_text().count('"complete": false'):
            write_json(tmp_path / "done" / "manifest.json", {**store.manifest, "complete": False})
        return out

    rows.read = read
    with pytest.raises(RuntimeError, match="changed while it was being read"):
        model.fit(rows)


def test_bfloat16_compute_stays_close_to_float32(planted, device):
    f32 = OnlineSemiNMF(8, l1=L1, max_epochs=3, device=device, **FAST).fit(planted.Z)
    bf16 = OnlineSemiNMF(8, l1=L1, max_epochs=3, dtype=torch.bfloat16, device=device, **FAST).fit(planted.Z)
    assert bf16.W_dec.dtype == torch.float32  # the dictionary and statistics stay float32
    assert bf16.objective(planted.Z) == pytest.approx(f32.objective(planted.Z), rel=0.02)


def test_bad_options_are_named():
    with pytest.raises(TypeError, match="batchsize"):
        OnlineSemiNMF(4, batchsize=10)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        OnlineSemiNMF(4, batch_size=0)
    Z = torch.randn(300, 4)
    Z[123, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf in 1 rows"):
        OnlineSemiNMF(2, init_rows=100, batch_size=50, block_rows=10).fit(Z)
    with pytest.raises(ValueError, match="fewer than n_concepts"):
        OnlineSemiNMF(40).fit(torch.randn(10, 4))
