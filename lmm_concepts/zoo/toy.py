"""The toy DePALM on disk: save / load its parts, the toy CLIP for CLIPScore, and caption accuracy.

A toy folder holds ``tokenizer.json``, ``clip.safetensors`` + ``clip.json``, ``lm.safetensors`` + ``lm.json``
and ``connector.safetensors`` + ``connector.json`` (`HookedLMM.save_connector`'s format). The package ships one
in ``lmm_concepts/zoo/toy/``; `lmm-concepts train-toy --out DIR` writes another, loaded by ``load_toy(DIR)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from lmm_concepts._io import read_json, write_json, write_safetensors
from lmm_concepts.data.synthetic import ATTRIBUTES, SyntheticWorld, WorldSplit, parse_caption

SHIPPED = Path(__file__).parent / "toy"
FILES = ("tokenizer.json", "clip.safetensors", "clip.json", "lm.safetensors", "lm.json", "connector.safetensors",
         "connector.json")
RETRAIN = ("retrain it with `lmm-concepts train-toy --out runs/toy` (about 10 minutes on 2 CPU cores) and load "
           "that folder with `lmm_concepts.zoo.load_toy('runs/toy')`, or reinstall the package")


class ToyWeightsError(RuntimeError):
    """A toy-model file is missing or unreadable."""


def _checked(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise ToyWeightsError(f"toy model file missing: {path}; {RETRAIN}")
    return path


def _read_json(folder: Path, name: str) -> dict:
    path = _checked(folder, name)
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ToyWeightsError(f"toy model file {path} is corrupt ({e}); {RETRAIN}") from None


def _read_weights(folder: Path, name: str) -> dict[str, Tensor]:
    path = _checked(folder, name)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ToyWeightsError(f"toy model file {path} is corrupt ({e}); {RETRAIN}") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _load_into(module: nn.Module, state: dict[str, Tensor], source: Path) -> None:
    from lmm_concepts.models.checkpoints import load_weights_checked

    try:
        load_weights_checked(module, state, str(source))
    except ValueError as e:
        raise ToyWeightsError(f"{e}; {RETRAIN}") from None


# ---------------------------------------------------------------------------------------------------------------
def save_toy(folder: str | Path, tokenizer, clip: nn.Module, clip_meta: dict[str, Any], lm, lm_meta: dict[str, Any],
             lmm=None, dtype: torch.dtype = torch.float32) -> None:
    """Write the parts trained so far (pass ``lmm`` once the connector is trained)."""
    from lmm_concepts.zoo.tokenizer import save_tokenizer

    folder = Path(folder)
    save_tokenizer(tokenizer, folder / "tokenizer.json")
    if clip is not None:
        write_safetensors(folder / "clip.safetensors", {k: v.to(dtype) for k, v in clip.state_dict().items()})
        write_json(folder / "clip.json", clip_meta)
    if lm is not None:
        state = {k: v.to(dtype) for k, v in lm.state_dict().items() if ".hook_" not in k and "IGNORE" not in k}
        write_safetensors(folder / "lm.safetensors", state)
        write_json(folder / "lm.json", lm_meta)
    if lmm is not None:
        lmm.save_connector(folder / "connector.safetensors")


def load_toy_tokenizer(path: str | Path | None = None):
    """The toy model's word-level tokenizer (`PreTrainedTokenizerFast`)."""
    from lmm_concepts.zoo.tokenizer import load_tokenizer

    folder = Path(path) if path is not None else SHIPPED
    tok_path = _checked(folder, "tokenizer.json")
    try:
        return load_tokenizer(tok_path)
    except Exception as e:  # tokenizers raises its own Exception type on a bad file
        raise ToyWeightsError(f"toy model file {tok_path} is corrupt ({e}); {RETRAIN}") from None


def load_clip_part(folder: Path, tokenizer) -> tuple[nn.Module, dict]:
    from lmm_concepts.zoo.architecture import ClipConfig, build_clip

    meta = _read_json(folder, "clip.json")
    try:
        cfg = ClipConfig(**meta["clip"])
    except (TypeError, KeyError) as e:  # a clip.json written by another version of the recipe
        raise ToyWeightsError(f"{folder / 'clip.json'} does not fit this version's ClipConfig ({e}); {RETRAIN}") from None
    clip = build_clip(cfg, meta["image_size"], len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    _load_into(clip, _read_weights(folder, "clip.safetensors"), folder / "clip.safetensors")
    return clip.eval().requires_grad_(False), meta


def load_lm_part(folder: Path, tokenizer):
    from lmm_concepts.zoo.architecture import build_lm

    meta = _read_json(folder, "lm.json")
    lm = build_lm(meta["config"], tokenizer)
    state = _read_weights(folder, "lm.safetensors")
    own = {k: v for k, v in lm.state_dict().items() if ".hook_" not in k and "IGNORE" not in k}
    missing = sorted(set(own) - set(state))
    if missing or set(state) - set(own):
        raise ToyWeightsError(f"{folder / 'lm.safetensors'} does not fit its lm.json (missing {missing[:5]}); {RETRAIN}")
    lm.load_state_dict(state, strict=False)
    return lm.eval().requires_grad_(False)


def load_toy(path: str | Path | None = None, device: str | torch.device | None = None):
    """The toy DePALM as a `HookedLMM`, from the weights shipped in the package (or from `path`, a folder
    written by `lmm-concepts train-toy`). Offline, about a second."""
    from lmm_concepts.models.connectors import load_connector_file
    from lmm_concepts.models.hooked_lmm import HookedLMM
    from lmm_concepts.zoo.vision import ResNetClipVision

    folder = Path(path) if path is not None else SHIPPED
    if not folder.is_dir():
        raise ToyWeightsError(f"toy model folder not found: {folder}; {RETRAIN}")
    tokenizer = load_toy_tokenizer(folder)
    clip, _ = load_clip_part(folder, tokenizer)
    lm = load_lm_part(folder, tokenizer)
    _read_json(folder, "connector.json")
    _checked(folder, "connector.safetensors")
    try:
        connector, lmm_cfg = load_connector_file(folder / "connector.safetensors")
    except (SafetensorError, OSError, ValueError) as e:
        raise ToyWeightsError(f"toy connector in {folder} is unreadable ({e}); {RETRAIN}") from None
    model = HookedLMM.from_parts(lm, ResNetClipVision(clip.visual), connector.float(), lmm_cfg)
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


class ToyClip(NamedTuple):
    """The toy CLIP, ready for CLIPScore."""

    model: nn.Module
    """`open_clip.CLIP` (``encode_image``, ``encode_text``)."""
    tokenize: Callable[[Sequence[str]], Tensor]
    """Texts -> ``[batch, context_length]`` ids in the toy vocabulary (open_clip's ``tokenizer(texts)`` contract)."""
    preprocess: Callable[[Any], Tensor]
    """A PIL image -> ``[3, H, W]`` pixels (open_clip's ``preprocess`` contract)."""


def load_toy_clip(path: str | Path | None = None, device: str | torch.device | None = None) -> ToyClip:
    """The toy CLIP (both towers), its tokenizer function and its image preprocessing."""
    from open_clip.transform import image_transform

    from lmm_concepts.zoo.architecture import encode_texts

    folder = Path(path) if path is not None else SHIPPED
    tokenizer = load_toy_tokenizer(folder)
    clip, meta = load_clip_part(folder, tokenizer)
    if device is not None:
        clip.to(device)
    length = meta["clip"]["context_length"]

    def tokenize(texts: Sequence[str] | str) -> Tensor:
        return encode_texts(tokenizer, [texts] if isinstance(texts, str) else list(texts), length)

    preprocess = image_transform(meta["image_size"], is_train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return ToyClip(clip, tokenize, preprocess)


# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CaptionAccuracy:
    """How often generated captions name each ground-truth attribute (and nothing contradicting it)."""

    one_object: dict[str, float]
    """Per attribute, over images with one object; plus "all" (every attribute right) and "n" (images)."""
    multi_object: dict[str, float]
    """The same over images with two or three objects ("count" included)."""
    examples: list[dict[str, Any]]
    """A few (caption, attributes) pairs, for the eye."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@torch.no_grad()
def caption_accuracy(model, world: SyntheticWorld | WorldSplit, n: int | None = None, batch_size: int = 64,
                     max_new_tokens: int = 20) -> CaptionAccuracy:
    """Caption `n` images of a world split (default: the whole test split) greedily and score every attribute
    with `parse_caption`: right when the caption names the true value and no other value of that attribute."""
    split = world.test if isinstance(world, SyntheticWorld) else world
    n = len(split) if n is None else min(n, len(split))
    hits: dict[bool, dict[str, list[bool]]] = {False: {}, True: {}}
    examples = []
    for start in range(0, n, batch_size):
        samples = split[start : min(n, start + batch_size)]
        out = model.generate([s.image for s in samples], max_new_tokens=max_new_tokens)
        for s, text in zip(samples, out.texts, strict=True):
            found = parse_caption(text)
            multi = s.attributes["count"] > 1
            for a in ATTRIBUTES:
                hits[multi].setdefault(a, []).append(found[a] == s.attributes[a])
            hits[multi].setdefault("all", []).append(all(found[a] == s.attributes[a] for a in ATTRIBUTES))
            if len(examples) < 8:
                examples.append({"id": s.id, "caption": text, "attributes": s.attributes})

    def summary(h: dict[str, list[bool]]) -> dict[str, float]:
        out = {a: round(sum(v) / len(v), 4) for a, v in h.items()}
        out["n"] = len(h.get("all", []))
        return out

    return CaptionAccuracy(summary(hits[False]), summary(hits[True]), examples)


def export_toy(src: str | Path, dst: str | Path = SHIPPED, dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Copy a trained toy folder's files into `dst` (default: the package's shipped folder), floating-point
    weights cast to `dtype` (float16 halves the size; `load_toy` casts back to float32). Returns file sizes."""
    import shutil

    src, dst = Path(src), Path(dst)
    for name in FILES:
        _checked(src, name)
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name.endswith(".safetensors"):
            state = load_file(str(src / name))
            write_safetensors(dst / name, {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
                              metadata={"format": "pt"})
        else:
            shutil.copyfile(src / name, dst / name)
        (dst / name).chmod(0o644)  # package data: readable by every user (atomic writes create 0600 files)
    return {name: (dst / name).stat().st_size for name in FILES}
