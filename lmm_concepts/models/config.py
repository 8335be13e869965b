"""`LMMConfig`: everything about a multimodal model that is not the language model's own config.

It is JSON-serialisable and saved beside a trained connector, so a connector file always says which prompt
layout, placeholder id and image preprocessing it was trained with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# CLIP's normalisation (open_clip's OPENAI_DATASET_MEAN / STD), the default for every family here.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LMMConfig:
    family: str
    """"depalm", "llava" or "toy": which preset built the model (informational; behaviour is set by the fields below)."""
    n_visual_tokens: int
    """Visual tokens per image (N_v): the connector's output length and the placeholders per image in `input_ids`."""
    image_token_id: int
    """Placeholder id marking where visual tokens go. May be >= d_vocab (GPT-2 has no spare row): it is
    replaced before the embedding lookup."""
    prompt: str = ""
    """Default text prompt. With `image_marker` in it (LLaVA), the marker is expanded into the placeholders;
    without (DePALM), the placeholders form a prefix before the prompt."""
    image_marker: str | None = None
    """Text marking the image inside `prompt` (LLaVA: "<image>"); None puts the image before the prompt."""
    image_size: int = 224
    """Side of the square image the vision encoder takes."""
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    vision: dict[str, Any] = field(default_factory=dict)
    """How the vision tower was built (name, feature layer, ...), for provenance."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_mean"], d["image_std"] = list(self.image_mean), list(self.image_std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LMMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"LMMConfig: unknown keys {sorted(unknown)} in the saved config; known keys: {sorted(known)}")
        d = dict(d)
        for k in ("image_mean", "image_std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)
