"""Concept learners: Semi-NMF (the method) and the paper's baselines, all exportable as sae-lens SAEs.

The names below are imported from their modules on first use (`lmm_concepts._lazy`): importing a module of this
package (`fit_cli` for `lmm-concepts fit --help`) costs no torch."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.dictionary.base import ConceptDictionary, FitError
    from lmm_concepts.dictionary.kmeans import KMeans
    from lmm_concepts.dictionary.l1_rule import L1Rule, resolve_l1
    from lmm_concepts.dictionary.lasso import nonneg_lasso
    from lmm_concepts.dictionary.nmf import NMF
    from lmm_concepts.dictionary.pca import PCA
    from lmm_concepts.dictionary.planted import planted_dictionary
    from lmm_concepts.dictionary.random_dico import RandomDictionary
    from lmm_concepts.dictionary.sae import SAEDictionary
    from lmm_concepts.dictionary.saes import (
        SemiNMFSAE,
        SemiNMFTrainingSAE,
        SemiNMFTrainingSAEConfig,
        register_architectures,
    )
    from lmm_concepts.dictionary.semi_nmf import SemiNMF
    from lmm_concepts.dictionary.serialization import load_dictionary
    from lmm_concepts.dictionary.simple import Simple

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "NMF",
    "PCA",
    "ConceptDictionary",
    "FitError",
    "KMeans",
    "L1Rule",
    "RandomDictionary",
    "SAEDictionary",
    "SemiNMF",
    "SemiNMFSAE",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "Simple",
    "load_dictionary",
    "nonneg_lasso",
    "planted_dictionary",
    "register_architectures",
    "resolve_l1",
]
