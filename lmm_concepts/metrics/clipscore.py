"""CLIPScore (Hessel et al. 2021) as the paper and its code use it.

    CLIPScore(image, text) = 2.5 · max(cos(E_img(image), E_txt(text)), 0)

with the text of a concept "A photo is described by the words w1, w2, …". For a test image whose concepts are
ranked by activation, top-1 is the score of its strongest concept and top-r the mean of the scores of its r
strongest (the reference code's top-3). The CLIP model is any open_clip model the user gives, loaded from local
files (`load_clip`); nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

W = 2.5  # CLIPScore's rescaling weight

CLIP_HELP = (
    "pass clip=lmm_concepts.metrics.load_clip(PATH): a local open_clip folder (open_clip_config.json + "
    "open_clip_model.safetensors), or a model name with checkpoint=/path/to/weights"
)


@dataclass
class ClipModel:
    """An open_clip model with its tokenizer and image preprocessing (`open_clip.create_model_and_transforms`)."""

    model: nn.Module
    tokenizer: Callable
    preprocess: Callable
    device: str | torch.device | None = None
    batch_size: int = 64

    def _device(self) -> torch.device:
        return torch.device(self.device) if self.device is not None else next(self.model.parameters()).device

    @torch.no_grad()
    def encode_images(self, images: Sequence) -> Float[Tensor, "n embed"]:
        """Unit-norm image embeddings of PIL images."""
        dev, out = self._device(), []
        for i in range(0, len(images), self.batch_size):
            x = torch.stack([self.preprocess(im) for im in images[i : i + self.batch_size]]).to(dev)
            out.append(self.model.encode_image(x).float())
        return nn.functional.normalize(torch.cat(out), dim=-1).cpu()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Float[Tensor, "n embed"]:
        """Unit-norm text embeddings."""
        dev, out = self._device(), []
        for i in range(0, len(texts), self.batch_size):
            out.append(self.model.encode_text(self.tokenizer(list(texts[i : i + self.batch_size])).to(dev)).float())
        return nn.functional.normalize(torch.cat(out), dim=-1).cpu()


def as_clip(clip) -> ClipModel:
    if clip is None:
        raise ValueError(f"CLIPScore needs a CLIP model: {CLIP_HELP}")
    if isinstance(clip, ClipModel):
        return clip
    if isinstance(clip, tuple) and len(clip) == 3:
        return ClipModel(*clip)
    raise TypeError(f"clip must be a ClipModel or a (model, tokenizer, preprocess) tuple, got {type(clip).__name__}")


def load_clip(
    path_or_name: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str | None = None
) -> ClipModel:
    """An open_clip model from local files only.

    `load_clip("/models/my_clip")`: a folder with `open_clip_config.json` and its weights (open_clip's local-dir);
    `load_clip("ViT-B-32", checkpoint="/models/clip.safetensors")`: a built-in architecture and a weights file.
    """
    import open_clip

    device = device or "cpu"
    name = str(path_or_name)
    if checkpoint is None:
        folder = Path(name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"no open_clip_config.json in {folder}: CLIP weights are missing; {CLIP_HELP}")
        name = f"local-dir:{folder}"
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
    else:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"CLIP checkpoint {checkpoint} does not exist; {CLIP_HELP}")
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(checkpoint), device=device)
    model.eval()
    return ClipModel(model, open_clip.get_tokenizer(name), preprocess, device=device)


def clipscore_matrix(
    image_features: Float[Tensor, "n_images embed"], text_features: Float[Tensor, "n_texts embed"]
) -> Float[Tensor, "n_images n_texts"]:
    """2.5 · max(cos, 0) for every (image, text) pair of unit-norm features."""
    return W * (image_features @ text_features.T).clamp_min(0)


def clip_score(clip, images: Sequence, texts: Sequence[str]) -> Float[Tensor, "n"]:  # noqa: F821
    """CLIPScore of each (image, text) pair (same length)."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts: CLIPScore pairs them one to one")
    clip = as_clip(clip)
    return W * (clip.encode_images(images) * clip.encode_texts(texts)).sum(-1).clamp_min(0)


def topr_mean(
    scores: Float[Tensor, "n_images n_concepts"], top_idx: Int[Tensor, "n_images r_max"], r: int
) -> Float[Tensor, "n_images"]:  # noqa: F821
    """Per image, the mean score of its r strongest concepts (`top_idx` sorted strongest first)."""
    if r > top_idx.shape[1]:
        raise ValueError(f"r={r} but only {top_idx.shape[1]} top concepts were given")
    return scores.gather(1, top_idx[:, :r]).mean(1)
