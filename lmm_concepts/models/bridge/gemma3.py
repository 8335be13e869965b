"""Gemma 3 (`Gemma3ForConditionalGeneration`): SigLIP patch features -> average pooling to `mm_tokens_per_image`
tokens -> RMSNorm -> projection; the processor expands the prompt's `<start_of_image>` into `<start_of_image>`,
one placeholder per visual token and `<end_of_image>`.

What differs from LLaVA:
- images go to the processor nested per sample (`[[image], ...]`): a flat list reads as every image for one sample;
- the tokens of one image attend to each other both ways. HF builds that mask from `token_type_ids` (1 on the
  image's placeholders); without them the bridge's attention among image tokens is causal (logits 2.5 off on the
  tiny test model). They are derived here from the placeholders that take the image, never stored: a batch
  cut by `ModelInputs.truncate` or extended by generated tokens keeps them right, and a placeholder the model
  generated is an ordinary (causal) token, as in HF `generate`;
- the token embedding is scaled by sqrt(d_model) inside HF's embedding module (the bridge hooks its output, so
  `hook_embed` and every residual vector include the scale), and every RMSNorm multiplies by (1 + weight);
  `final_norm` runs HF's own module, so both hold there too;
- the text config may carry `final_logit_softcapping`, but HF's multimodal forward never applies it (only the
  text-only `Gemma3ForCausalLM` does; released Gemma 3 checkpoints set it to null anyway): the lens reads the
  logits the model gives, uncapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxtyping import Bool
from torch import Tensor

from lmm_concepts.models.bridge.family import FamilySpec, measured_parity, register_family
from lmm_concepts.models.interface import ModelInputs


class Gemma3Family(FamilySpec):
    name = "gemma3"
    architectures = ("Gemma3ForConditionalGeneration",)
    parity = measured_parity(0.0, 8.3e-7)
    vision_rows = ("one row per sample: [batch, patches, d_vision] (SigLIP) -> [batch, mm_tokens_per_image, d_model] "
                   "(average-pooled, normed, projected)")
    fallback_template = "<start_of_turn>user\n{image}{text}<end_of_turn>\n<start_of_turn>model\n"
    image_tokens_sit = ("inside the prompt, at <start_of_image>: <start_of_image>, mm_tokens_per_image placeholders "
                        "(256 for released checkpoints), <end_of_image>, between blank lines; attention among one "
                        "image's tokens is bidirectional")
    vision_features_hook = "vision_projector.hook_in"  # SigLIP's last hidden state [batch, patches, d_vision]
    visual_tokens_hook = "vision_projector.hook_out"  # pooled, normed, projected [batch, mm_tokens_per_image, d_model]
    final_hook_is = ("the output of the final RMSNorm (x · (1 + weight)), HF's last hidden state; logits = "
                     "final @ W_U, not soft-capped (HF's multimodal forward ignores final_logit_softcapping)")

    def process(self, processor: Any, prompts: Sequence[str], images: Sequence[Any]) -> Any:
        batch = super().process(processor, prompts, [[image] for image in images])  # one list per sample
        if batch["pixel_values"].shape[0] != len(images):
            raise ValueError(f"the Gemma3 processor cut {len(images)} images into {batch['pixel_values'].shape[0]} "
                             "crops (pan and scan); lmm-concepts reads one image as one set of visual tokens: turn "
                             "pan and scan off in the processor's settings (do_pan_and_scan = False)")
        return batch

    def forward_kwargs(self, inputs: ModelInputs, takes_image: Bool[Tensor, "batch pos"]) -> dict[str, Any]:
        """The images, and `token_type_ids` (1 where a placeholder takes the image) for the bidirectional mask."""
        return {**inputs.images, "token_type_ids": takes_image.long()}

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> int:
        return int(config.mm_tokens_per_image)

    def final_logit_softcap(self, config: Any) -> float | None:
        return None  # see the module docstring


register_family(Gemma3Family())
