"""Every bridge family's tiny checkpoint (the `save_<family>_checkpoint` builders) and what its tests expect of it,
in one table: the family tests and `scripts/bridge_parity_table.py` read it, and a test running the whole pipeline
over every family can."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _bridge_families_b import CASES as FAMILY_CASES_B
from _bridge_fixtures import save_llava_checkpoint
from _bridge_idefics3 import save_idefics3_checkpoint, save_smolvlm_checkpoint
from _bridge_llava_anyres import save_llava_next_checkpoint, save_llava_onevision_checkpoint
from transformers import (
    Idefics3ForConditionalGeneration,
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
)

from lmm_concepts.models.bridge import CAPTION_INSTRUCTION


@dataclass(frozen=True)
class Case:
    """One family's tiny checkpoint and what its tests expect of it."""

    save: Callable[[Path], Path]
    hf_class: type
    family: str
    prompts: tuple[str, str]
    """Two prompts of different lengths (left padding), each with the image marker."""
    default_prompt: str
    """The family's captioning prompt in its chat template."""
    patches: int
    """Vision-tower patches per tile (the vision features' positions)."""
    tile_tokens: int
    """Visual tokens per tile at the connector's output."""
    tied: bool = False
    """Unembedding tied to the token embedding."""


VICUNA = ("USER: <image>\nw1 w2 w3 ASSISTANT:", "USER: <image> ASSISTANT:")
QWEN = ("<|im_start|>user\n<image>\nw1 w2 w3<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\n<image><|im_end|>\n<|im_start|>assistant\n")
SMOLVLM = ("<|im_start|>User:<image>w1 w2 w3<end_of_utterance>\nAssistant:",
           "<|im_start|>User:<image><end_of_utterance>\nAssistant:")
CASES = {
    "llava": Case(save_llava_checkpoint, LlavaForConditionalGeneration, "llava", VICUNA,
                  f"USER: <image>\n{CAPTION_INSTRUCTION} ASSISTANT:", patches=16, tile_tokens=16),
    "llava_next": Case(save_llava_next_checkpoint, LlavaNextForConditionalGeneration, "llava_next", VICUNA,
                       f"USER: <image>\n{CAPTION_INSTRUCTION} ASSISTANT:", patches=16, tile_tokens=16),
    "llava_onevision": Case(save_llava_onevision_checkpoint, LlavaOnevisionForConditionalGeneration,
                            "llava_onevision", QWEN,
                            f"<|im_start|>user\n<image>\n{CAPTION_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n",
                            patches=16, tile_tokens=16),
    "idefics3": Case(save_idefics3_checkpoint, Idefics3ForConditionalGeneration, "idefics3", SMOLVLM,
                     f"<|im_start|>User:<image>{CAPTION_INSTRUCTION}<end_of_utterance>\nAssistant:",
                     patches=16, tile_tokens=4),
    "smolvlm": Case(save_smolvlm_checkpoint, Idefics3ForConditionalGeneration, "idefics3", SMOLVLM,
                    f"<|im_start|>User:<image>{CAPTION_INSTRUCTION}<end_of_utterance>\nAssistant:",
                    patches=36, tile_tokens=4, tied=True),
}


TILED = ("llava_next", "llava_onevision", "idefics3", "smolvlm")
"""Families whose images are cut into tiles (a different number per image)."""


EVERY_FAMILY: dict[str, Callable[[Path], Path]] = {
    **{name: case.save for name, case in CASES.items()},
    **{name: case.save for name, case in FAMILY_CASES_B.items()},
}
"""Every bridge family's tiny checkpoint builder (folder -> folder), by case name: the five of `CASES` and the
four of `tests/_bridge_families_b.py` (Gemma 3, Qwen2.5-VL, Mistral 3, Qwen3-VL)."""
