"""Image preprocessing: PIL images or file paths -> normalised pixel tensors `[batch, 3, H, W]`.

The transform is open_clip's evaluation transform (resize the short side with bicubic interpolation, centre
crop, RGB, scale to [0, 1], normalise), parameterised by the checkpoint's own size, mean and std: open_clip's
settings for DePALM, `preprocessor_config.json` for LLaVA (`read_hf_preprocessor_config`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from open_clip.transform import image_transform
from PIL import Image
from torch import Tensor

from lmm_concepts.models.config import LMMConfig

ImageLike = Image.Image | str | Path


class ImagePreprocessor:
    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]):
        self.image_size = image_size
        self.transform = image_transform(image_size, is_train=False, mean=tuple(mean), std=tuple(std))

    @classmethod
    def from_config(cls, cfg: LMMConfig) -> ImagePreprocessor:
        return cls(cfg.image_size, cfg.image_mean, cfg.image_std)

    def __call__(self, images: Sequence[ImageLike] | ImageLike) -> Float[Tensor, "batch 3 H W"]:
        if isinstance(images, (Image.Image, str, Path)):
            images = [images]
        return torch.stack([self.transform(load_image(im)) for im in images])


def load_image(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path} (pass an existing file path, a PIL image or a tensor)")
    with Image.open(path) as im:
        return im.convert("RGB")


def read_hf_preprocessor_config(folder: str | Path) -> dict[str, Any]:
    """Size, mean and std from an HF `preprocessor_config.json` (CLIPImageProcessor layout), or from the
    "image_processor" section of `processor_config.json`, where transformers 5 writes it.

    Returns keys `image_size`, `image_mean`, `image_std` (only those present in the file)."""
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
    elif (Path(folder) / "processor_config.json").is_file():
        cfg = json.loads((Path(folder) / "processor_config.json").read_text()).get("image_processor", {})
    else:
        return {}
    out: dict[str, Any] = {}
    crop = cfg.get("crop_size")
    size = cfg.get("size")
    for candidate in (crop, size):
        if isinstance(candidate, dict):
            val = candidate.get("height") or candidate.get("shortest_edge")
        else:
            val = candidate
        if val:
            out["image_size"] = int(val)
            break
    if "image_mean" in cfg:
        out["image_mean"] = tuple(float(x) for x in cfg["image_mean"])
    if "image_std" in cfg:
        out["image_std"] = tuple(float(x) for x in cfg["image_std"])
    return out
