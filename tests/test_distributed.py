"""Data-parallel Semi-NMF over torch.distributed (gloo, 2 processes on this machine's loopback)."""

from __future__ import annotations

import pytest
import torch
from _dist_workers import dying_worker, fit_worker, run_ranks, single_fit
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_gloo_ranks_fit_the_single_process_dictionary(tmp_path):
    codes = run_ranks(fit_worker, 2, tmp_path, None, True)
    assert codes == [0, 0], [p.read_text() for p in tmp_path.glob("error*.txt")]
    W0, W1 = (load_file(tmp_path / f"W{r}.safetensors") for r in (0, 1))
    assert torch.equal(W0["W_dec"], W1["W_dec"])  # every rank holds the same dictionary, bit for bit
    single = single_fit()
    torch.testing.assert_close(W0["W_dec"], single.W_dec, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(W0["history"], torch.tensor(single.history_), rtol=1e-9, atol=1e-9)
    # then, in the same process group, rank 1 is handed narrower rows: both ranks refuse, naming it
    for r in (0, 1):
        msg = (tmp_path / f"refused{r}.txt").read_text()
        assert "rank 1 reads rows [1200, 20] torch.float64 but rank 0 reads [1200, 24]" in msg


def test_a_dead_rank_is_named_and_the_fit_resumes_from_the_checkpoint(tmp_path):
    ckpt = tmp_path / "stats.safetensors"
    # rank 1 dies at its 45th read (12 for the start, 2 per step: epoch 2), as if killed; rank 0 must say so
    codes = run_ranks(dying_worker, 2, tmp_path, ckpt, 1, 45)
    assert codes[1] == 3 and codes[0] == 1
    msg = (tmp_path / "error0.txt").read_text()
    assert "RankFailure" in msg and "rank(s) 1 never reached step" in msg
    assert ckpt.exists()
    # both ranks come back and resume; the result is the uninterrupted fit's
    codes = run_ranks(fit_worker, 2, tmp_path, ckpt)
    assert codes == [0, 0], [p.read_text() for p in tmp_path.glob("error*.txt")]
    torch.testing.assert_close(load_file(tmp_path / "W0.safetensors")["W_dec"], single_fit().W_dec,
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shares_partition_every_batch(world_size):
    from lmm_concepts.dictionary.streaming import Schedule, rank_share

    sched = Schedule(n_rows=1003, batch_size=100, block_rows=7, seed=3)
    seen = []
    for batch in sched.batches(epoch=1):
        rows = [i for a, b in batch for i in range(a, b)]
        shares = [[i for a, b in rank_share(batch, r, world_size) for i in range(a, b)] for r in range(world_size)]
        assert sum(shares, []) == rows  # the ranks' shares, in rank order, are the batch
        seen += rows
    assert sorted(seen) == list(range(1003))  # one epoch reads every row once


def test_torchrun_fit_cli_equals_the_single_process_api(tmp_path):
    import os
    import subprocess
    import sys

    from _dist_workers import planted, planted_store

    import lmm_concepts as lc

    store = planted_store(tmp_path / "store", planted().float())
    out = tmp_path / "dico"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "lmm_concepts", "fit", str(store), "--layer", "final", "--method", "semi_nmf_online",
           "--n-concepts", "6", "--l1", "0.1", "--batch-size", "200", "--epochs", "4", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("fitted semi_nmf_online") == 1  # rank 0 alone saves
    saved = lc.load_dictionary(out)
    single = lc.OnlineSemiNMF(6, l1=0.1, batch_size=200, max_epochs=4).fit(store, layer="final")
    torch.testing.assert_close(saved.W_dec, single.W_dec, rtol=1e-4, atol=1e-5)
