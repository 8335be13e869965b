"""`lmm-concepts fit`: learn a concept dictionary from stored representations and save it for sae-lens.

    lmm-concepts fit runs/dog --layer final --method semi_nmf --n-concepts 20 --out runs/dog/dico

`--method semi_nmf_online` streams the representations from disk (`OnlineSemiNMF`: memory independent of n,
checkpointed, resumed by rerunning the same command) and is data-parallel under torchrun:

    torchrun --nproc-per-node 4 -m lmm_concepts fit runs/dog --layer final --method semi_nmf_online --out ...

The input is an extraction's `RepresentationStore` folder (one layer chosen with --layer) or a plain matrix
file [n, d] (`.safetensors`, `.npy`). The output folder holds the dictionary as sae-lens `cfg.json` +
`sae_weights.safetensors` (load it with `lmm_concepts.load_dictionary` or `sae_lens.SAE.load_from_disk`) and
`fit_config.json`, this command's options. A finished output with the same options is not fitted again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simple_parsing import field

from lmm_concepts._dtypes import torch_dtype
from lmm_concepts._io import read_json, write_json
from lmm_concepts.dictionary.registry import NameChoices, get_learner, learners
from lmm_concepts.errors import InputError, MissingInputError

if TYPE_CHECKING:  # torch, numpy and the learners are imported when a fit runs: `fit --help` stays fast
    from torch import Tensor

    from lmm_concepts.dictionary.base import ConceptDictionary

CONFIG_FILE = "fit_config.json"


@dataclass
class FitConfig:
    """Options of `lmm-concepts fit`."""

    store: str = field(positional=True)
    """representation store folder (from `lmm-concepts extract`), or a matrix file [n, d] (.safetensors / .npy)"""
    out: str = field(alias=["-o"])
    """output folder for the dictionary (sae-lens cfg.json + sae_weights.safetensors)"""
    n_concepts: int = 20
    """number of concepts K"""
    method: str = field(default="semi_nmf", choices=NameChoices())
    """learner (lmm_concepts.dictionary.registry): semi_nmf (the paper's method), semi_nmf_online (the same, streamed
    from disk; data-parallel under torchrun), the baselines pca, kmeans, simple, nmf, sae (sae-lens SAETrainer),
    random, and any learner registered since"""
    layer: str | None = None
    """layer to read from a store ("final", an index, or a hook name); in a .safetensors file, the tensor's key"""
    l1: str = "1.0"
    """L1 penalty on the codes for semi_nmf, semi_nmf_online, random and nmf: a number (absolute: scikit-learn's
    alpha, the paper's λ/2), "rms:F" (F times the training rows' RMS norm: the same F means the same at any scale)
    or "active:K" (solved so a fit has K active concepts per sample on average; costs a few small fits). The
    resolved value is saved in cfg.json as l1, the rule as l1_rule. Set for another learner, it is refused"""
    seed: int = 0
    """seed of every random choice (starts, batch order); set for a deterministic learner (simple), it is refused"""
    device: str = "cpu"
    """torch device to fit on ("cpu", "cuda", "cuda:1")"""
    dtype: Literal["float32", "float64"] = "float32"
    """precision of the fit"""
    kmeans_activation: Literal["inverse_distance", "distance"] = "inverse_distance"
    """codes of kmeans / simple: 1/(1 + distance) as the paper, or plain distances"""
    sae_kind: Literal["standard", "topk"] = "standard"
    """architecture of the sae baseline"""
    sae_k: int = 8
    """active latents per sample of a topk sae"""
    sae_training_samples: int = 100_000
    """samples the sae baseline trains on (epochs × n)"""
    hook_name: str | None = None
    """hook the exported SAE attaches to (default: the store's hook name for --layer)"""
    overwrite: bool = False
    """fit again even when --out already holds a dictionary fitted with these options"""
    batch_size: int = 4096
    """semi_nmf_online: rows per mini-batch (split over the torchrun ranks)"""
    epochs: int = 10
    """semi_nmf_online: passes over the data at most"""
    checkpoint: str | None = None
    """semi_nmf_online: statistics checkpoint for resuming (default: <out>.checkpoint.safetensors)"""


#: FitConfig field -> the learner parameter it sets, for every learner whose constructor takes that parameter.
#: Set away from its default, a field the chosen learner does not take is refused (`registry.Learner.build`).
LEARNER_OPTIONS = {"l1": "l1", "seed": "seed"}
#: fields named for the learners they serve: passed where taken, unused by the others (as their help says)
SCOPED_OPTIONS = {
    "kmeans_activation": "activation",
    "sae_kind": "kind",
    "sae_k": "k",
    "sae_training_samples": "training_samples",
}
#: fields for the streaming learners only (semi_nmf_online): passed to learners registered as `streaming`
STREAMING_OPTIONS = {"batch_size": "batch_size", "epochs": "max_epochs", "checkpoint": "checkpoint"}


def make_learner(cfg: FitConfig) -> ConceptDictionary:
    """A fresh learner for `cfg.method` with the options of `cfg` it takes (see the tables above)."""
    entry = get_learner(cfg.method)
    defaults = {f.name: f.default for f in dataclasses.fields(FitConfig)}
    given = {param: getattr(cfg, name) for name, param in LEARNER_OPTIONS.items() if getattr(cfg, name) != defaults[name]}
    shared: dict[str, Any] = {param: getattr(cfg, name) for name, param in {**LEARNER_OPTIONS, **SCOPED_OPTIONS}.items()}
    if entry.streaming:
        shared.update({param: getattr(cfg, name) for name, param in STREAMING_OPTIONS.items()})
        shared["checkpoint"] = cfg.checkpoint or f"{Path(cfg.out)}.checkpoint.safetensors"
    shared.update(device=cfg.device, dtype=torch_dtype(cfg.dtype))
    flags = {param: f"--{name}" for name, param in LEARNER_OPTIONS.items()}
    return entry.build(cfg.n_concepts, given=given, shared=shared, flags=flags)


def _read_safetensors(path: Path, key: str | None) -> Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        if key is None:
            if len(keys) != 1:
                raise InputError(f"{path} holds tensors {keys}: choose one with --layer KEY")
            key = keys[0]
        if key not in keys:
            raise KeyError(f"{path} has no tensor {key!r}; it holds {keys}")
        return f.get_tensor(key)


def _read_npy(path: Path, key: str | None) -> Tensor:
    import numpy as np
    import torch

    return torch.from_numpy(np.load(path, allow_pickle=False))


MATRIX_READERS: dict[str, Callable[[Path, str | None], Tensor]] = {
    ".safetensors": _read_safetensors,
    ".npy": _read_npy,
}


def _open_store(path: Path):
    from lmm_concepts.extraction.store import RepresentationStore

    return RepresentationStore.open(path)


def load_representations(store: str | Path, layer: str | None) -> tuple[Tensor, str | None]:
    """The matrix Z [n, d] to fit, and the hook name it came from (None for a plain file)."""
    path = Path(store)
    if not path.exists():
        raise MissingInputError(
            f"{path} does not exist: pass a representation store folder or a .safetensors/.npy file"
        )
    if path.is_dir():
        rs = _open_store(path)
        if layer is None:
            raise InputError(
                f"{path} is a representation store: choose a layer with --layer (stored: {rs.layers})"
            )
        key: int | str = int(layer) if re.fullmatch(r"-?\d+", layer) else layer
        return rs.layer(key), rs.hook_name(key)
    reader = MATRIX_READERS.get(path.suffix)
    if reader is None:
        raise InputError(
            f"cannot read {path}: expected a store folder or a file ending in {sorted(MATRIX_READERS)}"
        )
    return reader(path, layer), None


def streamed_representations(store: str | Path, layer: str | None):
    """What `OnlineSemiNMF.fit` reads without loading it whole (store folder, mmapped .npy, safetensors slices:
    `streaming.as_row_source`), and the hook name it came from."""
    from lmm_concepts.dictionary.streaming import as_row_source

    path = Path(store)
    if not (path.is_dir() or (path.is_file() and path.suffix in (".npy", ".safetensors"))):
        return load_representations(store, layer)  # its errors say what is expected
    key: int | str | None = int(layer) if layer and re.fullmatch(r"-?\d+", layer) and path.is_dir() else layer
    rows = as_row_source(_open_store(path) if path.is_dir() else path, key)
    return rows, getattr(rows, "hook", None)


def _already_done(cfg: FitConfig, out: Path) -> bool:
    return (
        not cfg.overwrite
        and (out / "cfg.json").is_file()
        and (out / CONFIG_FILE).is_file()
        and read_json(out / CONFIG_FILE) == dataclasses.asdict(cfg)
    )


def fit(cfg: FitConfig) -> ConceptDictionary:
    """Fit `cfg.method` on the chosen representations and save it in `cfg.out`; returns the learner."""
    from lmm_concepts.dictionary.serialization import load_dictionary

    out = Path(cfg.out)
    if _already_done(cfg, out):
        print(f"{out} already holds this dictionary (same options); pass --overwrite to fit again")
        return load_dictionary(out, device=cfg.device)
    entry = get_learner(cfg.method)
    learner = make_learner(cfg)  # bad options are refused before anything is read
    from lmm_concepts.dictionary.distributed import distributed_run

    # joins torchrun's process group when launched by torchrun (left at the end); else single-process
    with distributed_run() as comm:
        if comm.active and not entry.streaming:
            streaming = [name for name, e in learners().items() if e.streaming]
            raise InputError(
                f"--method {cfg.method} is not data-parallel: run it without torchrun, or use --method "
                f"{' / '.join(streaming)}"
            )
        if entry.streaming:
            Z, hook = streamed_representations(cfg.store, cfg.layer)
        else:
            Z, hook = load_representations(cfg.store, cfg.layer)
        learner = learner.fit(Z)
    if comm.rank == 0:  # every rank holds the same dictionary: one writes it
        learner.save(out, hook_name=cfg.hook_name or hook)
        write_json(out / CONFIG_FILE, dataclasses.asdict(cfg))  # written last: its presence marks a finished fit
        shape = (getattr(Z, "n_rows", None) or Z.shape[0], learner.d_in)
        print(f"fitted {cfg.method} with {cfg.n_concepts} concepts on Z {shape}; saved to {out}")
    return learner
