"""Writing a sae-lens SAE folder atomically (`ConceptDictionary.save`), in a leaf module: `serialization` imports
the base class, so the base class imports this, not `serialization`, and no import waits inside a function."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lmm_concepts.errors import ConflictingOutputError

if TYPE_CHECKING:
    from sae_lens import SAE


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def save_sae(sae: SAE, path: str | os.PathLike) -> Path:
    """`sae.save_model` into a sibling temporary folder, then swap it in for `path` atomically.

    Files already in `path` that the SAE does not write (a run's config, notes) are kept.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConflictingOutputError(
            f"{path} is a file; a dictionary is saved as a folder (cfg.json + safetensors): remove the file or "
            "choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        sae.save_model(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a saved dictionary is an ordinary folder
        if path.exists():
            for entry in path.iterdir():
                if not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        _fsync_tree(tmp)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / path.name, path)  # put the previous dictionary back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path
