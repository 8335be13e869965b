"""Grounding: concept vectors in words (logit lens) and images (most activating samples)."""

from lmm_concepts.grounding.explanations import ConceptExplanation, Explanations, concept_text
from lmm_concepts.grounding.ground import SampleExplanation, explain, ground
from lmm_concepts.grounding.words import WordFilter, lens_logits, top_words

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
