"""Grounding: concept vectors in words (logit lens) and images (most activating samples)."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.grounding.explanations import ConceptExplanation, Explanations, concept_text
    from lmm_concepts.grounding.ground import SampleExplanation, explain, ground
    from lmm_concepts.grounding.words import WordFilter, lens_logits, top_words

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "ConceptExplanation",
    "Explanations",
    "SampleExplanation",
    "WordFilter",
    "concept_text",
    "explain",
    "ground",
    "lens_logits",
    "top_words",
]
