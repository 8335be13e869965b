"""Metrics: CLIPScore, BERTScore, overlap, dictionary quality and seed stability, faithfulness, and `evaluate`
(the paper's table with its baselines). `recovery.py` (against planted ground truth) lives here too."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.metrics.bertscore import BertModel, load_bert
    from lmm_concepts.metrics.clipscore import ClipModel, clip_score, clipscore_matrix, load_clip, topr_mean
    from lmm_concepts.metrics.evaluate import EvaluationResults, evaluate
    from lmm_concepts.metrics.faithfulness import ConceptFaithfulness, FaithfulnessResult, faithfulness
    from lmm_concepts.metrics.overlap import overlap
    from lmm_concepts.metrics.quality import (
        DictionaryQuality,
        dictionary_quality,
        matched_cosine,
        seed_stability,
    )
    from lmm_concepts.metrics.registry import noise_images
    from lmm_concepts.metrics.sequences import StoreSequences, store_sequences
    from lmm_concepts.metrics.sweeps import SweepResults, k_sweep, layer_sweep

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "BertModel",
    "ClipModel",
    "ConceptFaithfulness",
    "DictionaryQuality",
    "EvaluationResults",
    "FaithfulnessResult",
    "StoreSequences",
    "SweepResults",
    "clip_score",
    "clipscore_matrix",
    "dictionary_quality",
    "evaluate",
    "faithfulness",
    "k_sweep",
    "layer_sweep",
    "load_bert",
    "load_clip",
    "matched_cosine",
    "noise_images",
    "overlap",
    "seed_stability",
    "store_sequences",
    "topr_mean",
]
