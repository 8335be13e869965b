"""LLaVA-1.5 (`LlavaForConditionalGeneration`): CLIP patch features -> projector -> one visual token per
placeholder; the processor expands the prompt's `<image>` into as many placeholders as the image has tokens."""

from __future__ import annotations

from typing import Any

from lmm_concepts.models.bridge.family import FamilySpec, measured_parity, register_family
from lmm_concepts.models.interface import ModelInputs


class LlavaFamily(FamilySpec):
    name = "llava"
    architectures = ("LlavaForConditionalGeneration",)
    fallback_template = "USER: {image}\n{text} ASSISTANT:"  # the llava-1.5-hf chat template's layout
    parity = measured_parity(0.0, 0.0, "; HookedLMM (backend='hooked'): logits 1.8e-6")
    image_tokens_sit = ("inside the prompt, at <image>: one placeholder per patch (576 for LLaVA-1.5 at 336 px; "
                        "+1 with vision_feature_select_strategy='full', which keeps CLIP's class token)")

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> int:
        """Patches of the vision tower's fixed-size input, plus its class token when the "full" strategy keeps it
        (HF's "default" strategy drops the first token)."""
        vision = config.vision_config
        n_tokens = (vision.image_size // vision.patch_size) ** 2
        if getattr(vision, "model_type", "") == "clip_vision_model":
            n_tokens += 1  # CLIP's class token
        return n_tokens - (1 if config.vision_feature_select_strategy == "default" else 0)


register_family(LlavaFamily())
