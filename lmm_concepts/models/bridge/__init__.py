"""The TransformerBridge backend: any multimodal family TransformerLens's `TransformerBridge` adapts, the Hugging
Face model kept as it is. `BridgeLMM` implements the `LMM` interface; one `FamilySpec` per family file says what
the family does differently, registered by the HF architecture names of its `config.json`."""

from lmm_concepts.models.bridge import gemma3 as _gemma3  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import idefics3 as _idefics3  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import llava as _llava  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import llava_next as _llava_next  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import llava_onevision as _llava_onevision  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import mistral3 as _mistral3  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import qwen2_5_vl as _qwen2_5_vl  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge import qwen3_vl as _qwen3_vl  # noqa: F401  (registers its family)
from lmm_concepts.models.bridge.bridge_lmm import BridgeLMM
from lmm_concepts.models.bridge.family import (
    CAPTION_INSTRUCTION,
    FamilySpec,
    family_for,
    register_family,
    supported_architectures,
)

__all__ = [
    "CAPTION_INSTRUCTION",
    "BridgeLMM",
    "FamilySpec",
    "family_for",
    "register_family",
    "supported_architectures",
]
