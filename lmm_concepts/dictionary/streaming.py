"""Rows of Z [n, d] read in mini-batches from memory or from disk, in a seeded order every process agrees on.

A *row source* is anything with `n_rows`, `d`, `dtype` and `read(start, stop) -> Tensor [stop - start, d]`.
`as_row_source` wraps a tensor, a numpy array (a `np.memmap` stays on disk), a list of safetensors shards
(read slice by slice through safetensors' memory map, so only the rows asked for become process memory),
or any object that already is a row source (a `RepresentationStore`'s `rows(layer)`).

The schedule cuts the rows into blocks of `block_rows` consecutive rows, shuffles the blocks once per epoch
with a generator seeded by (seed, epoch), and deals them into global mini-batches of `batch_size` rows. A
data-parallel rank reads its contiguous share of each global batch, so the union over ranks of what they read
at step t is exactly the batch a single process reads at step t.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts._dtypes import from_safetensors_code
from lmm_concepts.errors import InputError

Ranges = list[tuple[int, int]]


@runtime_checkable
class RowSource(Protocol):
    """Random access to contiguous row ranges of a matrix Z [n_rows, d]."""

    n_rows: int
    d: int
    dtype: torch.dtype

    def read(self, start: int, stop: int) -> Float[Tensor, "rows d"]: ...


class TensorRows:
    """A tensor (any device) or numpy array / memmap as a row source; reads are views or small copies."""

    def __init__(self, Z: Tensor | np.ndarray):
        if Z.ndim != 2:
            raise InputError(
                f"Z must be 2-D [n_samples, d] (one representation per row), got shape {tuple(Z.shape)}; "
                "flatten extra dimensions with Z.reshape(-1, Z.shape[-1])"
            )
        self._Z = Z
        self.n_rows, self.d = int(Z.shape[0]), int(Z.shape[1])
        self.dtype = Z.dtype if isinstance(Z, Tensor) else torch.from_numpy(np.empty(0, dtype=Z.dtype)).dtype

    def read(self, start: int, stop: int) -> Tensor:
        block = self._Z[start:stop]
        return block if isinstance(block, Tensor) else torch.from_numpy(np.array(block))  # a copy: memmaps are read-only


class SafetensorsRows:
    """Rows concatenated over safetensors shards, each holding one [rows, d] tensor named `key`.

    Shards are opened through safetensors' memory map: reading rows copies only those rows into process
    memory, the rest of the file stays in the page cache, which the kernel may drop at will.
    """

    def __init__(self, shards: Sequence[str | os.PathLike], key: str | None = None):
        from safetensors import safe_open

        if not shards:
            raise InputError("no shards given: pass at least one .safetensors file")
        self._handles, self._key, starts = [], [], [0]
        self.d, self.dtype = None, None
        for path in shards:
            f = safe_open(str(path), framework="pt")
            keys = list(f.keys())
            name = key if key is not None else (keys[0] if len(keys) == 1 else None)
            if name is None or name not in keys:
                raise InputError(f"{path}: cannot tell which tensor holds the rows (has {keys}); pass key=")
            sl = f.get_slice(name)
            shape = sl.get_shape()
            dtype = from_safetensors_code(sl.get_dtype())
            if len(shape) != 2:
                raise InputError(f"{path}: tensor {name!r} has shape {shape}, expected [rows, d]")
            if self.d is None:
                self.d, self.dtype = int(shape[1]), dtype
            elif (shape[1], dtype) != (self.d, self.dtype):
                raise InputError(
                    f"{path}: rows are [{shape[1]}] {dtype} but earlier shards hold [{self.d}] {self.dtype}; "
                    "every shard of one matrix must have the same width and dtype"
                )
            self._handles.append(sl)
            starts.append(starts[-1] + int(shape[0]))
        self._starts = starts
        self.n_rows = starts[-1]

    def read(self, start: int, stop: int) -> Tensor:
        if start >= stop:
            return torch.empty(0, self.d, dtype=self.dtype)
        parts = []
        i = bisect.bisect_right(self._starts, start) - 1
        while start < stop:
            lo, hi = self._starts[i], self._starts[i + 1]
            take = min(stop, hi)
            parts.append(self._handles[i][start - lo : take - lo])
            start, i = take, i + 1
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def as_row_source(data, layer: int | str | None = None) -> RowSource:
    """Wrap `data` (tensor, ndarray/memmap, a .npy file (memory-mapped), .safetensors paths (`layer`: the tensor's
    key), a RepresentationStore or its folder with `layer`, or a row source) as a row source."""
    from lmm_concepts.extraction.store import RepresentationStore

    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        data = RepresentationStore.open(data)  # a folder is a store (its error says so otherwise)
    if isinstance(data, RepresentationStore):
        return data.rows(layer)  # the store's own row source: it knows its files
    if isinstance(data, RowSource) and not isinstance(data, (Tensor, np.ndarray)):
        return data
    if isinstance(data, (Tensor, np.ndarray)):
        return TensorRows(data)
    if isinstance(data, (str, os.PathLike)) and Path(data).suffix == ".npy":
        return TensorRows(np.load(data, mmap_mode="r", allow_pickle=False))
    if isinstance(data, (str, os.PathLike)) and Path(data).suffix == ".safetensors":
        return SafetensorsRows([data], key=None if layer is None else str(layer))
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        return SafetensorsRows(data)
    raise TypeError(
        f"cannot read rows from a {type(data).__name__}: pass a tensor or numpy array [n, d], a list of "
        ".safetensors shard paths, or a RepresentationStore (with layer=)"
    )


@dataclass(frozen=True)
class Schedule:
    """The seeded order of mini-batches over `n_rows` rows (see the module docstring)."""

    n_rows: int
    batch_size: int
    block_rows: int
    seed: int
    shuffle: bool = True

    def __post_init__(self):
        if self.batch_size < 1 or self.block_rows < 1:
            raise ValueError(f"batch_size and block_rows must be positive, got {self.batch_size}, {self.block_rows}")

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def batches(self, epoch: int) -> list[Ranges]:
        """Row ranges of every global batch of `epoch`, in order."""
        n_blocks = -(-self.n_rows // self.block_rows)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n_blocks, generator=g).tolist()
        else:
            order = list(range(n_blocks))
        ranges = [(b * self.block_rows, min((b + 1) * self.block_rows, self.n_rows)) for b in order]
        return [slice_ranges(ranges, s * self.batch_size, (s + 1) * self.batch_size) for s in range(self.steps_per_epoch)]


def slice_ranges(ranges: Ranges, lo: int, hi: int) -> Ranges:
    """The rows at positions [lo, hi) of the concatenation of `ranges`, as ranges."""
    out, pos = [], 0
    for a, b in ranges:
        n = b - a
        s, e = max(lo - pos, 0), min(hi - pos, n)
        if s < e:
            out.append((a + s, a + e))
        pos += n
        if pos >= hi:
            break
    return out


def rank_share(batch: Ranges, rank: int, world_size: int) -> Ranges:
    """The contiguous share of a global batch that `rank` of `world_size` encodes."""
    n = sum(b - a for a, b in batch)
    bounds = np.linspace(0, n, world_size + 1).round().astype(int)
    return slice_ranges(batch, int(bounds[rank]), int(bounds[rank + 1]))


def read_ranges(source: RowSource, ranges: Ranges) -> Tensor:
    """Concatenate the rows of `ranges` from `source` ([0, d] when `ranges` is empty)."""
    if not ranges:
        return source.read(0, 0)
    parts = [source.read(a, b) for a, b in ranges]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def iter_batches(source: RowSource, schedule: Schedule, epoch: int, *, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> Iterator[tuple[int, Tensor]]:
    """(step, this rank's rows of the step's global batch) for one epoch, from `start_step` on."""
    for step, batch in enumerate(schedule.batches(epoch)):
        if step >= start_step:
            yield step, read_ranges(source, rank_share(batch, rank, world_size))
