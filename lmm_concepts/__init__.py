"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package registers its sae-lens architectures and has no other side effect.
"""

from lmm_concepts.dictionary import ConceptDictionary, SemiNMF, nonneg_lasso, planted_dictionary

__version__ = "0.1.0"

__all__ = [
    "ConceptDictionary",
    "SemiNMF",
    "nonneg_lasso",
    "planted_dictionary",
    "__version__",
]
