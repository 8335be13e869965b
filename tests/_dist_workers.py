"""Worker processes for the torch.distributed tests: each rank runs one of these in a spawned process.

A rank writes what it computed (safetensors) or the error it raised (text) under `out`, so the test can
compare ranks and name failures without pickling anything back.
"""

from __future__ import annotations

import os
import socket
import traceback
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(target, world_size: int, out: Path, *args, timeout: float = 300.0) -> list[int]:
    """Run `target(rank, world_size, port, out, *args)` in `world_size` spawned processes; their exit codes.

    Unlike torch.multiprocessing.spawn, a failing rank does not kill the others, so survivors can report.
    """
    port = free_port()
    ctx = get_context("spawn")
    procs = [ctx.Process(target=_entry, args=(target, r, world_size, port, str(out), *args)) for r in range(world_size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    codes = []
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
        codes.append(p.exitcode)
    return codes


def _entry(target, rank, world_size, port, out, *args):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        target(rank, world_size, Path(out), *args)
    except BaseException as err:
        (Path(out) / f"error{rank}.txt").write_text(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------- fit workers
FIT = dict(n=1200, d=24, K=6, n_active=2, l1=0.1)
OPTIONS = dict(batch_size=200, block_rows=50, max_epochs=4, init_rows=600, lasso_tol=1e-10, lasso_max_iter=100,
               dtype=torch.float64)


def planted():
    from lmm_concepts.dictionary.planted import planted_dictionary

    return planted_dictionary(FIT["n"], FIT["d"], FIT["K"], FIT["n_active"], seed=1, dtype=torch.float64).Z


def single_fit(checkpoint=None, source=None):
    from lmm_concepts.dictionary.online import OnlineSemiNMF

    model = OnlineSemiNMF(FIT["K"], l1=FIT["l1"], checkpoint=checkpoint, checkpoint_every=3, **OPTIONS)
    return model.fit(planted() if source is None else source)


def fit_worker(rank, world_size, out: Path, checkpoint=None, then_narrow=False):
    """A data-parallel fit; with `then_narrow`, a second fit in the same group where rank 1's rows are narrower,
    whose error each rank records in refused{rank}.txt."""
    from safetensors.torch import save_file

    from lmm_concepts.dictionary.online import OnlineSemiNMF

    model = single_fit(checkpoint)
    save_file({"W_dec": model.W_dec, "history": torch.tensor(model.history_)}, str(out / f"W{rank}.safetensors"))
    if then_narrow:
        Z = planted()
        try:
            OnlineSemiNMF(FIT["K"], l1=FIT["l1"], **OPTIONS).fit(Z[:, :-4] if rank == 1 else Z)
        except ValueError as err:
            (out / f"refused{rank}.txt").write_text(str(err))


class DyingRows:
    """Rows of Z, but the process exits (as if killed) at its `die_at`-th read."""

    def __init__(self, Z, die_at):
        self.Z, self.die_at, self.reads = Z, die_at, 0
        self.n_rows, self.d, self.dtype = Z.shape[0], Z.shape[1], Z.dtype

    def read(self, start, stop):
        self.reads += stop > start
        if self.reads == self.die_at:
            os._exit(3)
        return self.Z[start:stop]


def dying_worker(rank, world_size, out: Path, checkpoint, die_rank, die_at):
    source = DyingRows(planted(), die_at if rank == die_rank else -1)
    single_fit(checkpoint, source)


# ---------------------------------------------------------------------------------------------- extraction
def extract_worker(rank, world_size, out: Path, store: str, token: str = "dog"):
    from test_extract_distributed import LAYERS, SCRIPTS, items

    import lmm_concepts as lc
    from tests._extract_fixtures import ScriptedLMM

    lc.extract(ScriptedLMM(SCRIPTS), items(), token, layers=LAYERS, out=store, batch_size=2, progress=False)


def planted_store(path: Path, Z: torch.Tensor) -> Path:
    """A complete one-layer RepresentationStore ("final") holding Z, written the way `extract` finishes one."""
    from lmm_concepts._io import write_json
    from lmm_concepts.extraction.shards import write_streamed
    from lmm_concepts.extraction.store import FINAL_HOOK, STORE_FORMAT

    write_streamed(path / "layers" / f"{FINAL_HOOK}.safetensors", [Z], Z.shape[0], Z.shape[1], Z.dtype)
    write_json(path / "manifest.json", {"format": STORE_FORMAT, "complete": True, "layers": [FINAL_HOOK],
                                        "model": {"n_layers": 1, "d_model": Z.shape[1]}, "dtype": "float32"})
    return path
