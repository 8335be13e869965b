"""Single-tensor safetensors files written by streaming and read memory-mapped.

The safetensors format is an 8-byte little-endian header length, a JSON header, then raw little-endian bytes.
`safetensors.torch.save_file` needs the whole tensor in memory; a store's layer can be larger than that, so the
final per-layer file is assembled here chunk by chunk (bounded memory) and read back through `numpy.memmap`
(copy-on-write: pages stay file-backed until written). Files are valid safetensors: `safe_open` reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lmm_concepts._dtypes import SAFETENSORS_CODES, from_safetensors_code, safetensors_code, torch_dtype
from lmm_concepts._io import _atomic
from lmm_concepts.errors import InputError

#: the dtypes a store may hold (names of `_dtypes.FLOAT_DTYPES`)
STORE_DTYPES = ("float32", "float16", "bfloat16")
TENSOR_KEY = "activations"


def store_dtype(name: str) -> torch.dtype:
    return torch_dtype(name, STORE_DTYPES)


def write_streamed(
    path: str | os.PathLike,
    chunks: Iterable[Tensor],
    n_rows: int,
    d: int,
    dtype: torch.dtype,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write the row-wise concatenation of `chunks` ([m_i, d] each, Σ m_i = n_rows) as one tensor, atomically."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict = {TENSOR_KEY: {"dtype": safetensors_code(dtype), "shape": [n_rows, d], "data_offsets": [0, n_rows * d * itemsize]}}
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned

    def write(tmp: str) -> None:
        rows = 0
        with open(tmp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for chunk in chunks:
                if chunk.ndim != 2 or chunk.shape[1] != d:
                    raise ValueError(f"chunk of shape {tuple(chunk.shape)} does not fit [*, {d}]")
                c = chunk.detach().to("cpu", dtype).contiguous()
                f.write(c.view(torch.uint8).numpy().tobytes())
                rows += c.shape[0]
        if rows != n_rows:
            raise ValueError(f"wrote {rows} rows, expected {n_rows}")

    return _atomic(path, write)


def read_mmap(path: str | os.PathLike) -> Tensor:
    """The tensor of a single-tensor safetensors file, memory-mapped copy-on-write (no read into memory)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                raise ValueError(f"a header of {n} bytes in a file of {size}")
            header = json.loads(f.read(n))
        info = header[TENSOR_KEY]
        if info["dtype"] not in [SAFETENSORS_CODES[name] for name in STORE_DTYPES]:
            raise ValueError(f"dtype {info['dtype']} is not a store dtype")
        dtype = from_safetensors_code(info["dtype"])
        shape = tuple(info["shape"])
        start, end = info["data_offsets"]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - start != itemsize * int(np.prod(shape)) or 8 + n + end > size:
            raise ValueError(f"{size} bytes, its header needs {8 + n + end}")
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"{path} is damaged (truncated or not a layer file: {err}); the store must be extracted again "
            "(overwrite=True / --overwrite true)"
        ) from None
    if end == start:
        return torch.empty(shape, dtype=dtype)
    buf = np.memmap(path, dtype=np.uint8, mode="c", offset=8 + n + start, shape=(end - start,))
    return torch.from_numpy(buf).view(dtype).view(shape)
