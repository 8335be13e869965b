"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package registers its sae-lens architectures and has no other side effect.
"""

from lmm_concepts.dictionary import (
    NMF,
    PCA,
    ConceptDictionary,
    KMeans,
    RandomDictionary,
    SAEDictionary,
    SemiNMF,
    SemiNMFSAE,
    SemiNMFTrainingSAE,
    SemiNMFTrainingSAEConfig,
    Simple,
    load_dictionary,
    nonneg_lasso,
    planted_dictionary,
    register_architectures,
)

register_architectures()  # the package's only import side effect: sae-lens can load "semi_nmf", "pca", "kmeans"

__version__ = "0.1.0"

__all__ = [
    "NMF",
    "PCA",
    "ConceptDictionary",
    "KMeans",
    "RandomDictionary",
    "SAEDictionary",
    "SemiNMF",
    "SemiNMFSAE",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "Simple",
    "__version__",
    "load_dictionary",
    "nonneg_lasso",
    "planted_dictionary",
]
