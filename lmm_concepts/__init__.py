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
from lmm_concepts.dictionary import ConceptDictionary, SemiNMF, nonneg_lasso, planted_dictionary
from lmm_concepts.dictionary.distributed import RankFailure, init_distributed
from lmm_concepts.dictionary.online import OnlineSemiNMF
from lmm_concepts.extraction import RepresentationStore, extract

__version__ = "0.1.0"

__all__ = [
    "CaptionDataset",
    "CocoKarpathy",
    "ConceptDictionary",
    "SemiNMF",
    "nonneg_lasso",
    "planted_dictionary",
    "CsvCaptions",
    "HFDiskCaptions",
    "IterableCaptions",
    "JsonlCaptions",
    "OnlineSemiNMF",
    "RankFailure",
    "RepresentationStore",
    "extract",
    "init_distributed",
    "__version__",
]
