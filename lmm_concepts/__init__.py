"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package is cheap (no torch, no sae-lens): every public name below is imported from its module on
first use (`lmm_concepts._lazy`). Its one side effect is that sae-lens can load our architectures ("semi_nmf",
"pca", "kmeans"): registered now when sae-lens is already imported, else as soon as it is (`_sae_lens_hook`). The
learners (`lmm_concepts.dictionary.registry`) are registered, by name, when `lmm_concepts.dictionary` or any module
of it is first imported; a learner's module is imported when first used.
"""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports
from lmm_concepts._sae_lens_hook import register_with_sae_lens
from lmm_concepts._version import __version__

if TYPE_CHECKING:
    from lmm_concepts.data import (
        CaptionDataset,
        CocoKarpathy,
        CsvCaptions,
        HFDiskCaptions,
        IterableCaptions,
        JsonlCaptions,
        SyntheticWorld,
        attribute_words,
        parse_caption,
        shape_nouns,
    )
    from lmm_concepts.dictionary import (
        NMF,
        PCA,
        ConceptDictionary,
        FitError,
        KMeans,
        L1Rule,
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
        resolve_l1,
    )
    from lmm_concepts.dictionary.distributed import RankFailure, init_distributed
    from lmm_concepts.dictionary.online import OnlineSemiNMF
    from lmm_concepts.export import export_dashboard
    from lmm_concepts.extraction import RepresentationStore, extract
    from lmm_concepts.grounding import ConceptExplanation, Explanations, SampleExplanation, explain, ground
    from lmm_concepts.metrics import (
        EvaluationResults,
        FaithfulnessResult,
        SweepResults,
        evaluate,
        faithfulness,
        k_sweep,
        layer_sweep,
    )
    from lmm_concepts.models import (
        LMM,
        AttentionResampler,
        BridgeLMM,
        GenerationOutput,
        HookedLMM,
        LlavaProjector,
        LMMConfig,
        ModelInputs,
        PoolingResampler,
        load_lmm,
    )
    from lmm_concepts.report import CaptionActivations, caption_activations, make_report
    from lmm_concepts.steering import CaptionShift, caption_shift, steer, word_logit_shift
    from lmm_concepts.zoo import TrainToyConfig, caption_accuracy, load_toy, load_toy_clip, train_toy

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())
register_with_sae_lens()  # the package's only import side effect

__all__ = [
    "AttentionResampler",
    "attribute_words",
    "caption_activations",
    "CaptionActivations",
    "caption_accuracy",
    "caption_shift",
    "CaptionDataset",
    "CaptionShift",
    "CocoKarpathy",
    "ConceptDictionary",
    "ConceptExplanation",
    "FitError",
    "L1Rule",
    "resolve_l1",
    "CsvCaptions",
    "evaluate",
    "EvaluationResults",
    "explain",
    "Explanations",
    "export_dashboard",
    "extract",
    "faithfulness",
    "FaithfulnessResult",
    "GenerationOutput",
    "ground",
    "HFDiskCaptions",
    "HookedLMM",
    "BridgeLMM",
    "LMM",
    "load_lmm",
    "ModelInputs",
    "init_distributed",
    "IterableCaptions",
    "JsonlCaptions",
    "k_sweep",
    "KMeans",
    "layer_sweep",
    "LlavaProjector",
    "LMMConfig",
    "load_dictionary",
    "load_toy",
    "load_toy_clip",
    "NMF",
    "OnlineSemiNMF",
    "nonneg_lasso",
    "parse_caption",
    "PCA",
    "planted_dictionary",
    "PoolingResampler",
    "RandomDictionary",
    "RankFailure",
    "register_architectures",
    "make_report",
    "RepresentationStore",
    "SAEDictionary",
    "SampleExplanation",
    "SemiNMF",
    "SemiNMFSAE",
    "SemiNMFTrainingSAE",
    "SemiNMFTrainingSAEConfig",
    "shape_nouns",
    "Simple",
    "steer",
    "SweepResults",
    "SyntheticWorld",
    "train_toy",
    "TrainToyConfig",
    "word_logit_shift",
    "__version__",
]
