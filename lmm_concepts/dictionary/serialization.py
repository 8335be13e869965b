"""Dictionaries on disk, in sae-lens's own format (`cfg.json` + `sae_weights.safetensors`).

`ConceptDictionary.save` writes such a folder atomically (`sae_folder.save_sae`), so a folder at a dictionary's
path is always a complete dictionary. `load_dictionary` reads any such folder back into the
learner that wrote it (recorded in `cfg.metadata.lmm_concepts`), or wraps a plain sae-lens SAE.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lmm_concepts.dictionary.base import METADATA_KEY, ConceptDictionary
from lmm_concepts.dictionary.registry import import_target, learner_for_architecture, qualified_name
from lmm_concepts.errors import InputError

if TYPE_CHECKING:
    from sae_lens import SAE

#: an SAE saved without our metadata loads into the learner that introduced its architecture (`registry`);
#: one of any other architecture (sae-lens's own) into an SAEDictionary
FALLBACK_LEARNER = "lmm_concepts.dictionary.sae:SAEDictionary"


def _import(qualified: str) -> type:
    if not qualified.partition(":")[0].startswith("lmm_concepts."):
        # a learner from outside the package must already be imported: we never import code named by a file
        for cls in _all_subclasses(ConceptDictionary):
            if qualified_name(cls) == qualified:
                return cls
        raise InputError(f"the dictionary was saved by {qualified}, which is not imported; import it first")
    return import_target(qualified, "the dictionary's learner")


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def learner_class_for(sae: SAE) -> type[ConceptDictionary]:
    """The learner class an SAE loads back into: the one recorded in its metadata, else by architecture."""
    record = sae.cfg.metadata.get(METADATA_KEY) or {}
    if record.get("learner"):
        return _import(record["learner"])
    return learner_for_architecture(sae.cfg.architecture()) or _import(FALLBACK_LEARNER)


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
