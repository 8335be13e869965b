"""Concept learners: Semi-NMF (the method) and the paper's baselines, all exportable as sae-lens SAEs.

Each learner is registered here, once (`registry.register_learner`); the command line, sweeps, the demo, the report,
sae-lens registration and `load_dictionary` read their lists of learners from that registry. The registrations name
classes as "module:qualname" strings, imported when first used, and the names below are imported from their modules
on first use (`lmm_concepts._lazy`): importing this package (`fit_cli` for `lmm-concepts fit --help`) costs no
torch.
"""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports
from lmm_concepts.dictionary.registry import (
    SAEClasses,
    get_learner,
    learners,
    register_learner,
    registered_learner,
)

if TYPE_CHECKING:
    from lmm_concepts.dictionary.base import ConceptDictionary, FitError
    from lmm_concepts.dictionary.kmeans import KMeans
    from lmm_concepts.dictionary.l1_rule import L1Rule, resolve_l1
    from lmm_concepts.dictionary.lasso import nonneg_lasso
    from lmm_concepts.dictionary.nmf import NMF
    from lmm_concepts.dictionary.online import OnlineSemiNMF
    from lmm_concepts.dictionary.pca import PCA
    from lmm_concepts.dictionary.planted import planted_dictionary
    from lmm_concepts.dictionary.random_dico import RandomDictionary
    from lmm_concepts.dictionary.sae import SAEDictionary
    from lmm_concepts.dictionary.saes import (
        PCASAE,
        KMeansSAE,
        KMeansSAEConfig,
        PCASAEConfig,
        SemiNMFSAE,
        SemiNMFSAEConfig,
        SemiNMFTrainingSAE,
        SemiNMFTrainingSAEConfig,
        register_architectures,
    )
    from lmm_concepts.dictionary.semi_nmf import SemiNMF
    from lmm_concepts.dictionary.serialization import load_dictionary
    from lmm_concepts.dictionary.simple import Simple

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

_D = "lmm_concepts.dictionary"
# The learners, in the order the command line lists them (see `registry`): a new learner is one more line here.
register_learner("semi_nmf", f"{_D}.semi_nmf:SemiNMF", label="Semi-NMF", demo=True,
                 sae=f"{_D}.saes:SEMI_NMF_CLASSES")
register_learner("semi_nmf_online", f"{_D}.online:OnlineSemiNMF", label="Semi-NMF (online)", streaming=True)
register_learner("pca", f"{_D}.pca:PCA", label="PCA", demo=True, sae=f"{_D}.saes:PCA_CLASSES")
register_learner("kmeans", f"{_D}.kmeans:KMeans", label="KMeans", demo=True, sae=f"{_D}.saes:KMEANS_CLASSES")
register_learner("simple", f"{_D}.simple:Simple", label="Simple", demo=True)
register_learner("nmf", f"{_D}.nmf:NMF", label="NMF")
register_learner("sae", f"{_D}.sae:SAEDictionary", label="SAE", demo=True)
# random unit directions coded by the same non-negative lasso as Semi-NMF
register_learner("random", f"{_D}.random_dico:RandomDictionary", label="Random dictionary", demo=True)

__all__ = [
    "NMF",
    "PCA",
    "OnlineSemiNMF",
    "SAEClasses",
    "ConceptDictionary",
    "FitError",
    "KMeans",
    "L1Rule",
    "RandomDictionary",
    "SAEDictionary",
    "SemiNMF",
    "KMeansSAE",
    "KMeansSAEConfig",
    "PCASAE",
    "PCASAEConfig",
    "SemiNMFSAE",
    "SemiNMFSAEConfig",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "Simple",
    "load_dictionary",
    "get_learner",
    "learners",
    "nonneg_lasso",
    "planted_dictionary",
    "register_architectures",
    "register_learner",
    "registered_learner",
    "resolve_l1",
]
