"""Atomic file writes: a reader never sees half a file, and a killed job never leaves one behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when tensors are written: the CLI's light modules use this one too
    import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write `obj` as JSON to `path` atomically (temp file in the same folder, fsync, rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, ensure_ascii=False)

    return _atomic(path, write)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a dict of tensors as safetensors atomically (contiguous CPU copies, never pickle)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    from safetensors.torch import save_file

    return _atomic(path, lambda tmp: save_file(flat, tmp, metadata=dict(metadata) if metadata else None))


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as a folder to write into: refused at once (before any work) when it is an existing file."""
    from lmm_concepts.errors import ConflictingOutputError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConflictingOutputError(f"{option} {path} is a file: the output is a folder; choose another {option}")
    return path


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
