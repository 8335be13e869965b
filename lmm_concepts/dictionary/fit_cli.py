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
from typing import TYPE_CHECKING, Literal

from simple_parsing import field

from lmm_concepts._io import read_json, write_json

if TYPE_CHECKING:  # torch, numpy and the learners are imported when a fit runs: `fit --help` stays fast
    import torch
    from torch import Tensor

    from lmm_concepts.dictionary.base import ConceptDictionary

Method = Literal["semi_nmf", "semi_nmf_online", "pca", "kmeans", "simple", "nmf", "sae", "random"]
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
    method: Method = "semi_nmf"
    """learner: semi_nmf (the paper's method), semi_nmf_online (the same, streamed from disk; data-parallel under
    torchrun), pca, kmeans, simple, nmf, sae (sae-lens SAETrainer), random"""
    layer: str | None = None
    """layer to read from a store ("final", an index, or a hook name); in a .safetensors file, the tensor's key"""
    l1: str = "1.0"
    """L1 penalty on the codes for semi_nmf, semi_nmf_online, random and nmf: a number (absolute: scikit-learn's
    alpha, the paper's λ/2), "rms:F" (F times the training rows' RMS norm: the same F means the same at any scale)
    or "active:K" (solved so a fit has K active concepts per sample on average; costs a few small fits). The
    resolved value is saved in cfg.json as l1, the rule as l1_rule"""
    seed: int = 0
    """seed of every random choice (starts, batch order)"""
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


#: method -> learner factory from the config (one table instead of an if-chain)
def _learners() -> dict[str, Callable[[FitConfig, torch.dtype], ConceptDictionary]]:
    import lmm_concepts as lc

    def common(cfg: FitConfig, dtype: torch.dtype) -> dict:
        return {"device": cfg.device, "dtype": dtype}

    return {
        "semi_nmf": lambda c, t: lc.SemiNMF(c.n_concepts, l1=c.l1, seed=c.seed, **common(c, t)),
        "semi_nmf_online": lambda c, t: lc.OnlineSemiNMF(
            c.n_concepts,
            l1=c.l1,
            seed=c.seed,
            batch_size=c.batch_size,
            max_epochs=c.epochs,
            checkpoint=c.checkpoint or f"{Path(c.out)}.checkpoint.safetensors",
            **common(c, t),
        ),
        "pca": lambda c, t: lc.PCA(c.n_concepts, seed=c.seed, **common(c, t)),
        "kmeans": lambda c, t: lc.KMeans(
            c.n_concepts, activation=c.kmeans_activation, seed=c.seed, **common(c, t)
        ),
        "simple": lambda c, t: lc.Simple(c.n_concepts, activation=c.kmeans_activation, **common(c, t)),
        "nmf": lambda c, t: lc.NMF(c.n_concepts, l1=c.l1, seed=c.seed, **common(c, t)),
        "random": lambda c, t: lc.RandomDictionary(c.n_concepts, l1=c.l1, seed=c.seed, **common(c, t)),
        "sae": lambda c, t: lc.SAEDictionary(
            c.n_concepts,
            kind=c.sae_kind,
            k=c.sae_k,
            training_samples=c.sae_training_samples,
            seed=c.seed,
            **common(c, t),
        ),
    }


def _read_safetensors(path: Path, key: str | None) -> Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{path} holds tensors {keys}: choose one with --layer KEY")
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
        raise FileNotFoundError(
            f"{path} does not exist: pass a representation store folder or a .safetensors/.npy file"
        )
    if path.is_dir():
        rs = _open_store(path)
        if layer is None:
            raise ValueError(
                f"{path} is a representation store: choose a layer with --layer (stored: {rs.layers})"
            )
        key: int | str = int(layer) if re.fullmatch(r"-?\d+", layer) else layer
        return rs.layer(key), rs.hook_name(key)
    reader = MATRIX_READERS.get(path.suffix)
    if reader is None:
        raise ValueError(
            f"cannot read {path}: expected a store folder or a file ending in {sorted(MATRIX_READERS)}"
        )
    return reader(path, layer), None


def streamed_representations(store: str | Path, layer: str | None):
    """What `OnlineSemiNMF.fit` reads without loading it whole (store folder, mmapped .npy, safetensors slices),
    and the hook name it came from."""
    from lmm_concepts.dictionary.streaming import SafetensorsRows, StoreRows

    path = Path(store)
    if path.is_dir():
        key: int | str | None = int(layer) if layer and re.fullmatch(r"-?\d+", layer) else layer
        rows = StoreRows(_open_store(path), key)
        return rows, rows.hook
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path, mmap_mode="r", allow_pickle=False), None
    if path.suffix == ".safetensors":
        return SafetensorsRows([path], key=layer), None
    return load_representations(store, layer)


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
    learners = _learners()
    if cfg.method not in learners:
        raise ValueError(f"--method must be one of {sorted(learners)}, got {cfg.method!r}")
    from lmm_concepts.dictionary.distributed import init_distributed

    comm = init_distributed()  # joins torchrun's process group when launched by torchrun; else single-process
    if comm.active and cfg.method != "semi_nmf_online":
        raise ValueError(
            f"--method {cfg.method} is not data-parallel: run it without torchrun, or use --method semi_nmf_online"
        )
    if cfg.method == "semi_nmf_online":
        Z, hook = streamed_representations(cfg.store, cfg.layer)
    else:
        Z, hook = load_representations(cfg.store, cfg.layer)
    import torch

    dtype = getattr(torch, cfg.dtype)
    learner = learners[cfg.method](cfg, dtype).fit(Z)
    if comm.rank == 0:  # every rank holds the same dictionary: one writes it
        learner.save(out, hook_name=cfg.hook_name or hook)
        write_json(out / CONFIG_FILE, dataclasses.asdict(cfg))  # written last: its presence marks a finished fit
        shape = (getattr(Z, "n_rows", None) or Z.shape[0], learner.d_in)
        print(f"fitted {cfg.method} with {cfg.n_concepts} concepts on Z {shape}; saved to {out}")
    return learner
