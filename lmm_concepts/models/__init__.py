"""The multimodal models behind the `LMM` interface (`interface.py`): `HookedLMM` (vision encoder -> connector ->
visual tokens injected into a TransformerLens LLM) and `BridgeLMM` (an HF model under TransformerLens's bridge)."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.models.bridge import BridgeLMM
    from lmm_concepts.models.config import LMMConfig
    from lmm_concepts.models.connectors import (
        CONNECTORS,
        AttentionResampler,
        LlavaProjector,
        PoolingResampler,
        connector_from_config,
        load_connector_file,
    )
    from lmm_concepts.models.generation import GenerationOutput
    from lmm_concepts.models.hooked_lmm import HookedLMM
    from lmm_concepts.models.interface import FINAL_HOOK, LMM, ModelInputs, resid_hook
    from lmm_concepts.models.load import ModelSpec, load_lmm
    from lmm_concepts.models.loading import hf_to_hooked
    from lmm_concepts.models.preprocessing import ImagePreprocessor
    from lmm_concepts.models.vision import HFClipVision, OpenClipVision

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "CONNECTORS",
    "AttentionResampler",
    "BridgeLMM",
    "FINAL_HOOK",
    "LMM",
    "ModelInputs",
    "ModelSpec",
    "GenerationOutput",
    "HFClipVision",
    "HookedLMM",
    "ImagePreprocessor",
    "LMMConfig",
    "LlavaProjector",
    "OpenClipVision",
    "PoolingResampler",
    "connector_from_config",
    "hf_to_hooked",
    "load_connector_file",
    "load_lmm",
    "resid_hook",
]
