"""Data-parallel fitting on torch.distributed: gloo on CPU, NCCL on GPUs, launched with `torchrun`.

Every rank encodes its share of each global mini-batch; the sufficient statistics A = VᵀV [K, K], B = ZᵀV
[d, K] and the objective's parts are summed with one all-reduce per step, and every rank applies the same
dictionary step to the same sums, so every rank ends with the same W_dec [K, d] — the one a single process
computes on the same data and seed, up to the order of floating-point additions.

`Comm` is this process's view of the group. It never creates a process group: under `torchrun` call
`init_distributed()` (or `torch.distributed.init_process_group` yourself) before fitting; without a group
every collective is the identity and the fit is single-process.

A dead rank surfaces in the survivors as a failed collective. Before each all-reduce every rank records
its step in the group's key-value store; when a collective fails the survivors read those records and
raise `RankFailure` naming the ranks that never reached the step (or that reported their own error).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from lmm_concepts._dtypes import FLOAT_DTYPES

#: a dtype sent to other ranks as its index in the package's one dtype table
_DTYPE_CODES = {dtype: i for i, (dtype, _) in enumerate(FLOAT_DTYPES.values())}

logger = logging.getLogger(__name__)
_KEY = "lmm_concepts/fit"


class RankFailure(RuntimeError):
    """A collective failed because another rank died, hung or raised; the message names the rank(s)."""


def init_distributed(backend: str | None = None, timeout_s: float = 600.0) -> Comm:
    """Join the process group `torchrun` describes in the environment (RANK, WORLD_SIZE, MASTER_ADDR...).

    `backend` defaults to NCCL when this process sees a GPU and gloo otherwise. On CUDA the process is
    pinned to GPU `LOCAL_RANK`. Does nothing when the group already exists or WORLD_SIZE is absent.
    """
    if dist.is_available() and not dist.is_initialized() and "WORLD_SIZE" in os.environ:
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        logger.info("rank %d of %d joined the process group (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return Comm.current()


@contextmanager
def distributed_run(backend: str | None = None, timeout_s: float = 600.0) -> Iterator[Comm]:
    """`init_distributed()` for the length of a block, and a group it joined destroyed at the end: a process that
    exits with its gloo/NCCL group alive may abort in the C++ teardown ("terminate called without an active
    exception"), failing a fit that had finished. A group that existed before is left as it was."""
    joined = not (dist.is_available() and dist.is_initialized())
    comm = init_distributed(backend, timeout_s)
    try:
        yield comm
    finally:
        if joined and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Comm:
    """Rank, world size and process group of this process; `world_size == 1` means no communication."""

    rank: int = 0
    world_size: int = 1
    group: dist.ProcessGroup | None = None

    @classmethod
    def current(cls, group: dist.ProcessGroup | None = None) -> Comm:
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(group), dist.get_world_size(group), group)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str | None:
        return dist.get_backend(self.group) if self.active else None

    def collective_device(self, device: torch.device) -> torch.device:
        """Where collectives run: CUDA tensors under NCCL, CPU tensors under gloo (or without a group)."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return device if not self.active else torch.device("cpu")

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, t: Tensor, step: int) -> Tensor:
        """Sum `t` over ranks in place (identity without a group); a failure names the lost rank(s)."""
        return self._collective(t, step, lambda buf: dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=self.group))

    def broadcast(self, t: Tensor, src: int = 0, step: int = -1) -> Tensor:
        """Overwrite `t` in place with rank `src`'s copy (identity without a group)."""
        return self._collective(t, step, lambda buf: dist.broadcast(buf, src=src, group=self.group))

    def _collective(self, t: Tensor, step: int, op) -> Tensor:
        if not self.active:
            return t
        cdev = self.collective_device(t.device)
        buf = t if t.device == cdev else t.to(cdev)
        self._mark(step)
        try:
            op(buf)
        except Exception as err:  # gloo raises on a closed peer; NCCL's watchdog aborts the process instead
            raise RankFailure(self._diagnose(step, err)) from err
        if buf is not t:
            t.copy_(buf)
        return t

    def gather_ints(self, values: list[int], device: torch.device) -> list[list[int]]:
        """Every rank's `values` (one list per rank)."""
        mine = torch.tensor(values, dtype=torch.int64, device=self.collective_device(device))
        if not self.active:
            return [values]
        out = [torch.empty_like(mine) for _ in range(self.world_size)]
        try:
            dist.all_gather(out, mine, group=self.group)
        except Exception as err:
            raise RankFailure(self._diagnose(-1, err)) from err
        return [o.tolist() for o in out]

    def check_same_rows(self, n_rows: int, d: int, dtype: torch.dtype, *, same_n_rows: bool,
                        device: torch.device) -> list[int]:
        """Refuse ranks whose data differ in width or dtype (and in length when all read one store).

        Returns every rank's row count.
        """
        rows = self.gather_ints([n_rows, d, _DTYPE_CODES.get(dtype, -1)], device)
        names = {v: k for k, v in _DTYPE_CODES.items()}
        ref = rows[0]
        for r, (n, w, code) in enumerate(rows):
            if (w, code) != (ref[1], ref[2]) or (same_n_rows and n != ref[0]):
                raise ValueError(
                    f"rank {r} reads rows [{n}, {w}] {names.get(code, 'unsupported dtype')} but rank 0 reads "
                    f"[{ref[0]}, {ref[1]}] {names.get(ref[2], 'unsupported dtype')}: every rank must fit the same "
                    "representations (same store, layer and dtype); check the path each rank was given"
                )
        return [r[0] for r in rows]

    def report_failure(self, err: BaseException) -> None:
        """Tell the other ranks why this one is about to stop (best effort), so their error can say it."""
        store = self._store()
        if store is not None:
            try:
                store.set(f"{_KEY}/error/{self.rank}", f"{type(err).__name__}: {err}"[:500])
            except Exception:
                pass

    # ------------------------------------------------------------------ failure diagnosis
    def _store(self):
        if not self.active:
            return None
        try:
            return dist.distributed_c10d._get_default_store()
        except Exception:
            return None

    def _mark(self, step: int) -> None:
        store = self._store()
        if store is not None:
            store.set(f"{_KEY}/step/{self.rank}", str(step))

    def _diagnose(self, step: int, err: BaseException) -> str:
        head = f"rank {self.rank}: a collective at step {step} failed ({type(err).__name__}: {str(err)[:200]})"
        store = self._store()
        lost, errors = [], []
        try:
            store.set_timeout(datetime.timedelta(seconds=5))
            for r in range(self.world_size):
                if r == self.rank:
                    continue
                if store.check([f"{_KEY}/error/{r}"]):
                    errors.append(f"rank {r} raised {store.get(f'{_KEY}/error/{r}').decode()}")
                elif not store.check([f"{_KEY}/step/{r}"]) or int(store.get(f"{_KEY}/step/{r}")) < step:
                    lost.append(r)
        except Exception:
            return (f"{head}; the rendezvous store is unreachable too, so the rank hosting it (rank 0 under "
                    "mp.spawn / env:// init) has died. Resume from the checkpoint once every rank is back.")
        detail = "; ".join(errors) or (
            f"rank(s) {', '.join(map(str, lost))} never reached step {step}: they died or hang" if lost
            else "no rank reported an error; a rank may have died inside the collective")
        return f"{head}. {detail}. Resume from the checkpoint once every rank is back."
