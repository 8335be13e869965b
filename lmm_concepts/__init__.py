"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package registers its sae-lens architectures and has no other side effect.
"""

from lmm_concepts.data import (
    CaptionDataset,
    CocoKarpathy,
    CsvCaptions,
    HFDiskCaptions,
    IterableCaptions,
    JsonlCaptions,
)
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
from lmm_concepts.extraction import RepresentationStore, extract
from lmm_concepts.models import (
    AttentionResampler,
    GenerationOutput,
    HookedLMM,
    LlavaProjector,
    LMMConfig,
    PoolingResampler,
)

register_architectures()  # the package's only import side effect: sae-lens can load "semi_nmf", "pca", "kmeans"

__version__ = "0.1.0"

__all__ = [
    "NMF",
    "PCA",
    "AttentionResampler",
    "CaptionDataset",
    "CocoKarpathy",
    "ConceptDictionary",
    "CsvCaptions",
    "GenerationOutput",
    "HFDiskCaptions",
    "HookedLMM",
    "IterableCaptions",
    "JsonlCaptions",
    "KMeans",
    "LMMConfig",
    "LlavaProjector",
    "PoolingResampler",
    "RandomDictionary",
    "RepresentationStore",
    "SAEDictionary",
    "SemiNMF",
    "SemiNMFSAE",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "Simple",
    "__version__",
    "extract",
    "load_dictionary",
    "nonneg_lasso",
    "planted_dictionary",
]
