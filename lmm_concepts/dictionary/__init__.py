"""Concept learners: Semi-NMF (the method) and the paper's baselines, all exportable as sae-lens SAEs."""

from lmm_concepts.dictionary.base import ConceptDictionary

__all__ = ["ConceptDictionary"]
