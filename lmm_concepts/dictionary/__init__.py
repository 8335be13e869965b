"""Concept learners: Semi-NMF (the method) and the paper's baselines, all exportable as sae-lens SAEs."""

from lmm_concepts.dictionary.base import ConceptDictionary
from lmm_concepts.dictionary.lasso import nonneg_lasso
from lmm_concepts.dictionary.planted import planted_dictionary
from lmm_concepts.dictionary.semi_nmf import SemiNMF

__all__ = ["ConceptDictionary", "SemiNMF", "nonneg_lasso", "planted_dictionary"]
