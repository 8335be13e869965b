"""Our sae-lens architectures, registered with sae-lens when this module is imported (`lmm_concepts` imports it
as soon as sae-lens is imported: `lmm_concepts._sae_lens_hook`).

    "semi_nmf"  SemiNMFSAE / SemiNMFTrainingSAE   codes by non-negative lasso (SemiNMF, NMF, RandomDictionary)
    "pca"       PCASAE                            signed linear codes around the mean (PCA)
    "kmeans"    KMeansSAE                         1/(1 + distance) to prototypes (KMeans, Simple)

Baselines trained as ordinary SAEs (SAEDictionary) use sae-lens's own "standard" and "topk".
Which classes make up each architecture is said where its learner is registered (`dictionary.registry`).
"""

from __future__ import annotations

from lmm_concepts.dictionary.registry import SAEClasses, architectures
from lmm_concepts.dictionary.saes.kmeans_sae import KMeansSAE, KMeansSAEConfig
from lmm_concepts.dictionary.saes.pca_sae import PCASAE, PCASAEConfig
from lmm_concepts.dictionary.saes.semi_nmf_sae import (
    SemiNMFSAE,
    SemiNMFSAEConfig,
    SemiNMFTrainingSAE,
    SemiNMFTrainingSAEConfig,
)

#: the classes of each architecture, named by the learners that introduce them (`lmm_concepts.dictionary.__init__`)
SEMI_NMF_CLASSES = SAEClasses(SemiNMFSAE, SemiNMFSAEConfig, SemiNMFTrainingSAE, SemiNMFTrainingSAEConfig)
PCA_CLASSES = SAEClasses(PCASAE, PCASAEConfig)
KMEANS_CLASSES = SAEClasses(KMeansSAE, KMeansSAEConfig)


def _same_class(a: type, b: type) -> bool:
    # a reloaded module makes a new class object with the same name: that is still ours
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def _register(registry: dict, name: str, entry: tuple, register) -> None:
    if name in registry:
        if _same_class(registry[name][0], entry[0]):
            registry[name] = entry
            return
        raise RuntimeError(
            f"sae-lens architecture {name!r} is already registered to {registry[name][0].__qualname__}; "
            "lmm_concepts cannot register its own class under that name"
        )
    register(name, *entry)


def register_architectures() -> None:
    """Register our learners' architectures with sae-lens; safe to call twice (a registration of ours is kept)."""
    from sae_lens.registry import (
        SAE_CLASS_REGISTRY,
        SAE_TRAINING_CLASS_REGISTRY,
        register_sae_class,
        register_sae_training_class,
    )

    for name, (sae_cls, cfg_cls, train_cls, train_cfg_cls) in architectures().items():
        _register(SAE_CLASS_REGISTRY, name, (sae_cls, cfg_cls), register_sae_class)
        if train_cls is not None:
            _register(
                SAE_TRAINING_CLASS_REGISTRY, name, (train_cls, train_cfg_cls), register_sae_training_class
            )


register_architectures()  # sae-lens's SAE.load_from_disk can load our dictionaries from here on

__all__ = [
    "KMEANS_CLASSES",
    "PCA_CLASSES",
    "SEMI_NMF_CLASSES",
    "KMeansSAE",
    "KMeansSAEConfig",
    "PCASAE",
    "PCASAEConfig",
    "SemiNMFSAE",
    "SemiNMFSAEConfig",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "register_architectures",
]
