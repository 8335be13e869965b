"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package registers its sae-lens architectures and has no other side effect.
"""

from lmm_concepts.data.synthetic import SyntheticWorld, attribute_words, parse_caption, shape_nouns
from lmm_concepts.dictionary import ConceptDictionary
from lmm_concepts.models import (
    AttentionResampler,
    GenerationOutput,
    HookedLMM,
    LlavaProjector,
    LMMConfig,
    PoolingResampler,
)
from lmm_concepts.zoo import TrainToyConfig, caption_accuracy, load_toy, load_toy_clip, train_toy

__version__ = "0.1.0"

__all__ = [
    "AttentionResampler",
    "ConceptDictionary",
    "GenerationOutput",
    "HookedLMM",
    "LMMConfig",
    "LlavaProjector",
    "PoolingResampler",
    "SyntheticWorld",
    "TrainToyConfig",
    "attribute_words",
    "caption_accuracy",
    "load_toy",
    "load_toy_clip",
    "parse_caption",
    "shape_nouns",
    "train_toy",
    "__version__",
]
