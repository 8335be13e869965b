"""Distributed extraction: `extract` under torchrun shards the dataset across ranks by whole batches.

The dataset's fixed batch order is kept: batch i goes to rank i % world_size. Each rank commits its batches
as `parts/<i>/` folders of the one store (a folder every rank can write, e.g. a shared filesystem), exactly
as a single process would; when every rank is done, rank 0 merges the parts in batch order into the final
per-layer files and marks the manifest complete. So the store equals a single-process run's, row for row
(the batches are the same, so even the numbers match bit for bit when the model is deterministic). A rerun
after a crash skips every batch already committed, whichever rank wrote it.

`extract` runs the same loop (`loop.py`) in every case; `Ranks` says which batches a process takes. Rank 0 takes
the store's lock (held by it for the whole run, see `lock.py`, so a second run into the same folder is refused)
and creates (or clears) the store before the others open it (`open_writer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Which batches this process takes: batch i goes to rank i % world (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """This process's rank in the default process group (rank 0 of 1 without one)."""
        return cls(*rank_and_world())

    def takes(self, index: int) -> bool:
        return index % self.world == self.rank

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world > 1:
            dist.barrier()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def open_writer(make: Callable[[bool], object], out) -> object:
    """`make(owner)` on rank 0 first (`owner=True`: it takes the store's lock and creates or clears the store),
    then on the other ranks (`owner=False`: they add batches to the store rank 0 holds).

    If rank 0 cannot open the store (another extraction's store in `out`, or another run holding its lock), every
    rank raises instead of the others waiting for it forever.
    """
    rank, world = rank_and_world()
    if world == 1:
        return make(True)
    on_gpu = dist.get_backend() == "nccl"
    status = torch.zeros(1, device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")
    writer = None
    if rank == 0:
        try:
            writer = make(True)
        except Exception:
            status += 1
            dist.broadcast(status, src=0)
            raise
    dist.broadcast(status, src=0)
    if rank == 0:
        return writer
    if status.item():
        raise RuntimeError(f"rank 0 could not open the store at {out} (its error says why); nothing was written")
    return make(False)
