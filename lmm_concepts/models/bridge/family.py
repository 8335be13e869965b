"""What differs between the LMM families behind the TransformerBridge, in one `FamilySpec` subclass per family.

A family file (`llava.py`, ...) subclasses `FamilySpec`, overrides only what its family does differently, and
registers an instance under the Hugging Face architecture names that its `config.json` declares
(`register_family`). `BridgeLMM` holds one spec and never branches on the architecture itself.

What a spec answers:
- the prompt: the family's captioning prompt in its chat template, and the image marker a user prompt must hold;
- the processor call: images + prompts -> a left-padded batch; which of its tensors are the image tensors
  (`image_keys`, each with the sample on dim 0) and how they become the HF forward's keyword arguments;
- the image tokens: the placeholder id, how many visual tokens each row's image takes (so that placeholders the
  model generates later are told apart, see `models/placeholders.py`), the hook names of the vision features and
  the visual tokens, and where those tokens sit in the sequence (for the README's table);
- positions (`position_ids`, None where the model derives its own, e.g. 3-D rotary ones) and the final-logit
  soft-capping of the logit lens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from lmm_concepts.models.interface import ModelInputs

CAPTION_INSTRUCTION = "Describe the image in one sentence."
"""The user turn of the default captioning prompt (the reference code's LLaVA prompt)."""


def measured_parity(logits: float, predicts: float, note: str = "") -> str:
    """The README's parity cell from the gaps measured on the family's tiny checkpoint (fp32, CPU, a left-padded
    batch of 2 images with prompts of different lengths): logits against HF's own forward, and the vectors stored
    at the positions predicting each generated token against each image recomputed alone, unpadded (max abs)."""
    def gap(x: float) -> str:
        return "0" if x == 0 else f"{x:.1e}".replace("e-0", "e-")

    return (f"logits {gap(logits)} from HF's forward; greedy and 3-beam captions = HF generate; predicts vectors "
            f"{gap(predicts)} from each image alone{note}")


class FamilySpec:
    """The defaults fit a LLaVA-like family: one `<image>` marker expanded by the processor into one placeholder
    per visual token, `pixel_values` as the only image tensor, positions from the attention mask."""

    name: ClassVar[str]
    """Short family name recorded in a store's manifest (`identity()`)."""
    architectures: ClassVar[tuple[str, ...]]
    """HF architecture names (`config.json` "architectures") served by this spec."""
    image_keys: ClassVar[tuple[str, ...]] = ("pixel_values",)
    """Processor outputs that are image tensors (sample on dim 0), kept in `ModelInputs.images`."""
    vision_features_hook: ClassVar[str] = "vision_projector.hook_in"
    """Hook holding the vision features the connector reads."""
    visual_tokens_hook: ClassVar[str] = "vision_projector.hook_out"
    """Hook holding the visual tokens written over the placeholders."""
    image_tokens_sit: ClassVar[str] = "inside the prompt, at the image marker: one placeholder per visual token"
    """Where the image tokens sit in the sequence (documentation)."""
    fallback_template: ClassVar[str] = "{image}\n{text}"
    """Prompt layout used when the processor carries no chat template."""
    final_hook_is: ClassVar[str] = ("the output of the language model's final norm, HF's last hidden state; "
                                    "logits = final @ W_U (+ b_U)")
    """What `FINAL_HOOK` (store layer "final") holds for this family (documentation)."""
    vision_rows: ClassVar[str] = ("one row per sample: [batch, visual tokens, d_vision] (the patches the "
                                  "feature-select strategy keeps, raster order) -> [batch, visual tokens, d_model]")
    """How the rows of the two vision hooks are laid out: per sample, per tile or every image of the batch in
    one tensor, and in which order (documentation)."""
    parity: ClassVar[str]
    """Parity with the family's own HF model as measured on its tiny test checkpoint (documentation;
    `scripts/bridge_parity_table.py` and `scripts/bridge_parity.py` measure it, the family's tests assert it)."""

    # ------------------------------------------------------------------ prompts
    def image_marker(self, processor: Any) -> str:
        """The text a prompt holds where the image goes (the processor expands it)."""
        marker = getattr(processor, "image_token", None)
        if not marker:
            raise ValueError(f"the {type(processor).__name__} names no image_token; the {self.name} family needs one")
        return str(marker)

    def caption_prompt(self, processor: Any, instruction: str = CAPTION_INSTRUCTION) -> str:
        """The captioning prompt: the processor's chat template with one image and `instruction` in the user turn,
        ready for the assistant's answer; `fallback_template` when the processor has no template."""
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
            return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.fallback_template.format(image=self.image_marker(processor), text=instruction)

    def check_prompt(self, processor: Any, prompt: str) -> None:
        """One image per sample: the prompt must hold the image marker exactly once."""
        marker = self.image_marker(processor)
        found = prompt.count(marker)
        if found == 0:
            raise ValueError(f"the prompt {prompt!r} lacks the {self.name} image marker {marker!r}: put it once where "
                             f"the image goes (e.g. {self.caption_prompt(processor)!r}), or pass prompt=None for the "
                             "family's captioning prompt")
        if found > 1:
            raise ValueError(f"the prompt {prompt!r} holds the image marker {marker!r} {found} times; lmm-concepts "
                             "reads one image per sample: keep one marker and pass one image per prompt")

    # ------------------------------------------------------------------ processor and forward
    def process(self, processor: Any, prompts: Sequence[str], images: Sequence[Any]) -> Any:
        """Images + prompts (one each per sample) -> the processor's batch, token ids left-padded."""
        tokenizer = processor.tokenizer
        side = tokenizer.padding_side
        tokenizer.padding_side = "left"  # captions are generated after the prompt: pad before it
        try:
            return processor(text=list(prompts), images=list(images), padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = side

    def forward_kwargs(self, inputs: ModelInputs, takes_image: Bool[Tensor, "batch pos"]) -> dict[str, Any]:
        """The HF forward's (and `generate`'s) keyword arguments for the image tensors of `inputs`."""
        return dict(inputs.images)

    def position_ids(self, inputs: ModelInputs) -> Int[Tensor, "batch pos"] | None:
        """HF generate's positions for left-padded rows (cumsum of the mask - 1, 0 on padding); None lets the
        model derive its own."""
        return (inputs.attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)

    # ------------------------------------------------------------------ image tokens and the lens
    def image_token_id(self, config: Any) -> int:
        for key in ("image_token_id", "image_token_index"):
            value = getattr(config, key, None)
            if value is not None:
                return int(value)
        raise ValueError(f"the {self.name} config names no image_token_id")

    def image_token_counts(self, config: Any, inputs: ModelInputs) -> int | Int[Tensor, " batch"] | None:
        """Visual tokens of each row's image (an int when every image takes the same number). None: every
        placeholder takes the image (a placeholder the model generates cannot then be read back)."""
        return None

    def final_logit_softcap(self, config: Any) -> float | None:
        """The final-logit soft-capping (logits = cap · tanh(logits / cap)) of the text model, if any."""
        value = getattr(config.get_text_config(), "final_logit_softcapping", None)
        return float(value) if value else None

    def describe(self) -> dict[str, str]:
        """The README's row for this family (`python -m lmm_concepts.models.bridge.table` prints the table)."""
        return {"family": self.name, "architectures": ", ".join(self.architectures), "parity": self.parity,
                "image tokens": self.image_tokens_sit, "vision features": self.vision_features_hook,
                "visual tokens": self.visual_tokens_hook, "vision rows": self.vision_rows, "final": self.final_hook_is}


_FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Serve `spec.architectures` with `spec` (a second registration of an architecture is refused)."""
    for arch in spec.architectures:
        if arch in _FAMILIES and type(_FAMILIES[arch]) is not type(spec):
            raise ValueError(f"architecture {arch!r} is already served by the {_FAMILIES[arch].name} family")
        _FAMILIES[arch] = spec
    return spec


def registered_families() -> list[FamilySpec]:
    """Every registered family spec once, in registration order."""
    return list({id(spec): spec for spec in _FAMILIES.values()}.values())


def supported_architectures() -> list[str]:
    """HF architecture names the bridge backend serves."""
    return sorted(_FAMILIES)


def family_for(architecture: str) -> FamilySpec:
    """The spec serving `architecture`, or an error listing what is supported."""
    if architecture in _FAMILIES:
        return _FAMILIES[architecture]
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    hint = (" TransformerBridge has an adapter for it, but lmm-concepts has no family spec for it yet "
            "(one file in lmm_concepts/models/bridge/)." if architecture in SUPPORTED_ARCHITECTURES else "")
    raise ValueError(f"the bridge backend does not serve {architecture!r}.{hint} It serves "
                     f"{supported_architectures()}; HookedLMM serves LlavaForConditionalGeneration (HookedLMM.llava) "
                     "and DePALM on GPT-2 / OPT / Llama language models (HookedLMM.depalm)")


def placeholder_counts(spec: FamilySpec, config: Any, inputs: ModelInputs) -> int | Tensor | None:
    counts = spec.image_token_counts(config, inputs)
    return torch.as_tensor(counts) if isinstance(counts, int) else counts
