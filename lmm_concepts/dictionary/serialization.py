"""Dictionaries on disk, in sae-lens's own format (`cfg.json` + `sae_weights.safetensors`).

`save_sae` lets sae-lens's `save_model` write into a temporary folder and swaps it in with a rename, so a
folder at `path` is always a complete dictionary. `load_dictionary` reads any such folder back into the
learner that wrote it (recorded in `cfg.metadata.lmm_concepts`), or wraps a plain sae-lens SAE.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lmm_concepts.dictionary.base import METADATA_KEY, ConceptDictionary
from lmm_concepts.errors import InputError

if TYPE_CHECKING:
    from sae_lens import SAE

#: the learner that loads an SAE saved without our metadata, by architecture; anything else is an SAEDictionary
DEFAULT_LEARNERS = {
    "semi_nmf": "lmm_concepts.dictionary.semi_nmf:SemiNMF",
    "pca": "lmm_concepts.dictionary.pca:PCA",
    "kmeans": "lmm_concepts.dictionary.kmeans:KMeans",
}
FALLBACK_LEARNER = "lmm_concepts.dictionary.sae:SAEDictionary"


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
        raise FileExistsError(f"{path} is a file; a dictionary is saved as a folder (cfg.json + safetensors)")
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


def _import(qualified: str) -> type:
    module, _, name = qualified.partition(":")
    if not module.startswith("lmm_concepts."):
        # a learner from outside the package must already be imported: we never import code named by a file
        for cls in _all_subclasses(ConceptDictionary):
            if f"{cls.__module__}:{cls.__qualname__}" == qualified:
                return cls
        raise ValueError(f"the dictionary was saved by {qualified}, which is not imported; import it first")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def learner_class_for(sae: SAE) -> type[ConceptDictionary]:
    """The learner class an SAE loads back into: the one recorded in its metadata, else by architecture."""
    record = sae.cfg.metadata.get(METADATA_KEY) or {}
    qualified = record.get("learner") or DEFAULT_LEARNERS.get(sae.cfg.architecture(), FALLBACK_LEARNER)
    return _import(qualified)


def load_dictionary(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> ConceptDictionary:
    """A fitted learner from a folder written by `ConceptDictionary.save` (or by sae-lens's `save_model`).

    Our learners come back as their own class (PCA, KMeans, SemiNMF, ...); any other sae-lens SAE is wrapped
    in an `SAEDictionary`, so its decoder rows can be grounded like concepts.
    """
    from sae_lens import SAE
    from sae_lens.util import dtype_to_str

    path = Path(path)
    if not (path / "cfg.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no cfg.json: expected a folder written by ConceptDictionary.save or SAE.save_model"
        )
    try:
        sae = SAE.load_from_disk(
            path, device=str(device), dtype=dtype_to_str(dtype) if dtype is not None else None
        )
    except Exception as err:  # a truncated file, bad JSON, an unknown architecture, tampered sizes: name the folder
        raise InputError(
            f"cannot load the dictionary in {path} ({type(err).__name__}: {err}): its cfg.json or "
            "sae_weights.safetensors is damaged or they do not match; save or fit it again (lmm-concepts fit)"
        ) from err
    return learner_class_for(sae).from_sae(sae)
