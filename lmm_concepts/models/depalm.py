"""DePALM (Vallaeys et al.): a frozen open_clip vision tower, a resampler to N_v visual tokens, and a frozen
causal LLM (OPT, GPT-2, Llama) reading `[visual tokens ; prompt]`.

Everything loads from local files: the LLM from a `save_pretrained` folder (or an HF model object), the
vision tower from an open_clip architecture name plus an optional local checkpoint, the connector from a
file written by `HookedLMM.save_connector`. DePALM ships no trained connector: without one, the connector
is freshly initialised (train it before reading anything into its captions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from lmm_concepts._io import read_json, write_json
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.models.config import CLIP_MEAN, CLIP_STD, LMMConfig
from lmm_concepts.models.connectors import CONNECTORS, load_connector_file
from lmm_concepts.models.interface import LMM
from lmm_concepts.models.loading import hf_to_hooked, load_hf_causal_lm, load_tokenizer
from lmm_concepts.models.vision import OpenClipVision

DEPALM_PROMPT = "Answer:"


def build_depalm(cls: Any, llm, vision: str | nn.Module = "ViT-L-14", vision_weights=None,
                 connector=None, n_visual_tokens: int = 10, connector_type: str = "pooling",
                 dtype: torch.dtype = torch.float32, device=None, tokenizer=None, prompt: str = DEPALM_PROMPT,
                 connector_kwargs: dict[str, Any] | None = None, apply_ln_post: bool = True) -> LMM:
    """DePALM as a `cls` (`HookedLMM`, passed in by `HookedLMM.depalm`)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # the small parts first, so a bad vision or connector argument fails before a large LLM is loaded
    visual, vision_info = _vision_tower(vision, vision_weights)
    encoder = OpenClipVision(visual, apply_ln_post=apply_ln_post)
    vision_info["apply_ln_post"] = apply_ln_post
    module = None
    if connector is None:
        if connector_type not in CONNECTORS:
            raise ValueError(f"unknown connector_type {connector_type!r}; choose one of {sorted(CONNECTORS)}")
    elif isinstance(connector, (str, Path)):
        module, saved = load_connector_file(connector)
        n_visual_tokens = saved.n_visual_tokens
        prompt = saved.prompt
    else:
        module = connector

    hf_model, tokenizer, owned = _language_model(llm, tokenizer, dtype)
    hooked = hf_to_hooked(hf_model, tokenizer, dtype=dtype, device=device, release_hf=owned)
    del hf_model
    if module is None:
        module = CONNECTORS[connector_type](encoder.d_vision, hooked.cfg.d_model, n_visual_tokens,
                                            **(connector_kwargs or {}))
    d_in = getattr(module, "d_vision", encoder.d_vision)
    if d_in != encoder.d_vision:
        raise ValueError(f"the connector expects d_vision={d_in} but the vision tower {vision_info.get('name')} gives "
                         f"{encoder.d_vision}; use the vision tower the connector was trained with")

    image_size = encoder.image_size
    lmm_cfg = LMMConfig(
        family="depalm", n_visual_tokens=n_visual_tokens, image_token_id=hooked.cfg.d_vocab, prompt=prompt,
        image_size=image_size, image_mean=tuple(getattr(visual, "image_mean", None) or CLIP_MEAN),
        image_std=tuple(getattr(visual, "image_std", None) or CLIP_STD), vision=vision_info,
    )
    encoder = encoder.to(device=device, dtype=dtype).eval()
    module = module.to(device=device, dtype=dtype).eval()
    return cls.from_parts(hooked, encoder, module, lmm_cfg)


def _language_model(llm, tokenizer, dtype):
    """(HF model, tokenizer, whether we own the HF model and may free it while converting)."""
    if isinstance(llm, (str, Path)):
        path = Path(llm)
        if not path.is_dir():
            raise FileNotFoundError(f"language model folder not found: {path} (pass a folder written by save_pretrained)")
        return load_hf_causal_lm(path, dtype=dtype), tokenizer or load_tokenizer(path), True
    if not isinstance(llm, nn.Module) or not hasattr(llm, "config"):
        raise TypeError(f"llm must be a local folder or an HF causal LM, got {type(llm).__name__}")
    if tokenizer is None:
        source = Path(getattr(llm.config, "_name_or_path", "") or "")
        if not (str(source) and source.is_dir()):
            raise ValueError("pass tokenizer=... with an in-memory HF model (its config names no local folder)")
        tokenizer = load_tokenizer(source)
    return llm, tokenizer, False


def _vision_tower(vision, vision_weights) -> tuple[nn.Module, dict[str, Any]]:
    if isinstance(vision, str):
        if vision not in open_clip.list_models():
            raise ValueError(f"unknown open_clip architecture {vision!r}; see open_clip.list_models()")
        if vision_weights is not None and not Path(vision_weights).is_file():
            raise FileNotFoundError(f"vision weights not found: {vision_weights} (a local open_clip checkpoint file)")
        model = open_clip.create_model(vision, pretrained=str(vision_weights) if vision_weights else None,
                                       load_weights=vision_weights is not None)
        return model.visual, {"name": vision, "weights": str(vision_weights) if vision_weights else None}
    visual = getattr(vision, "visual", vision)
    if vision_weights is not None:
        raise ValueError("vision_weights is only used with an open_clip model name; load the weights into the module yourself")
    return visual, {"name": type(visual).__name__, "weights": None}


# ---------------------------------------------------------------------------------------------- DePALM folders
DEPALM_MODEL_TYPE = "depalm"
CONNECTOR_FILE = "connector.safetensors"


@dataclass(frozen=True)
class DepalmFolder:
    """What a DePALM folder's `config.json` names (paths resolved against the folder)."""

    language_model: Path
    """the language model's folder (an HF causal LM written by `save_pretrained`: GPT-2, OPT, Llama)"""
    connector: Path
    """the connector's weights (`HookedLMM.save_connector`; its `.json` beside it holds the `LMMConfig`)"""
    vision: str
    """the open_clip architecture of the vision tower"""
    vision_weights: Path | None
    """the vision tower's local open_clip checkpoint (None: random weights, for tests)"""
    apply_ln_post: bool = True


def is_depalm_config(config: dict[str, Any]) -> bool:
    return config.get("model_type") == DEPALM_MODEL_TYPE


def read_depalm_folder(folder: Path, config: dict[str, Any]) -> DepalmFolder:
    """The parts a DePALM folder names, each checked to exist. A DePALM folder holds

        config.json               {"model_type": "depalm", "architectures": ["DePALM"], "language_model": <folder>,
                                   "connector": "connector.safetensors", "vision": <open_clip name>,
                                   "vision_weights": <checkpoint or null>}
        connector.safetensors     the trained connector, and connector.json beside it (`HookedLMM.save_connector`)

    `vision` and `vision_weights` default to what the connector's json recorded when it was built; relative paths
    are read from the folder. `HookedLMM.save_depalm` writes one."""

    def path(key: str, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise InputError(f"{folder / 'config.json'}: {key!r} must name a file or folder, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else folder / p

    if "language_model" not in config:
        raise InputError(f"{folder / 'config.json'} is a DePALM config without 'language_model': name the language "
                         "model's folder (an HF causal LM written by save_pretrained)")
    language_model = path("language_model", config["language_model"])
    connector = path("connector", config.get("connector", CONNECTOR_FILE))
    if not language_model.is_dir():
        raise MissingInputError(f"{folder / 'config.json'} names the language model folder {language_model}, which "
                                "does not exist")
    for needed in (connector, connector.with_suffix(".json")):
        if not needed.is_file():
            raise MissingInputError(f"the DePALM folder {folder} lacks {needed.name} (HookedLMM.save_connector writes "
                                    "the connector's weights and its json)")
    recorded = (read_json(connector.with_suffix(".json")).get("lmm") or {}).get("vision") or {}
    vision = config.get("vision", recorded.get("name"))
    if not isinstance(vision, str) or not vision:
        raise InputError(f"{folder / 'config.json'}: name the vision tower's open_clip architecture (\"vision\": "
                         "\"ViT-L-14\"); the connector's json does not record one")
    weights = config.get("vision_weights", recorded.get("weights"))
    vision_weights = path("vision_weights", weights) if weights is not None else None
    if vision_weights is not None and not vision_weights.is_file():
        raise MissingInputError(f"the vision weights {vision_weights} named by {folder} do not exist")
    return DepalmFolder(language_model, connector, vision, vision_weights,
                        bool(config.get("apply_ln_post", recorded.get("apply_ln_post", True))))


def write_depalm_config(folder: Path, language_model: str | Path, vision: str | None,
                        vision_weights: str | Path | None, apply_ln_post: bool = True) -> Path:
    """The `config.json` of a DePALM folder whose connector is already saved there (see `read_depalm_folder`)."""
    config = {"model_type": DEPALM_MODEL_TYPE, "architectures": ["DePALM"], "language_model": str(language_model),
              "connector": CONNECTOR_FILE, "vision": vision, "apply_ln_post": apply_ln_post,
              "vision_weights": str(vision_weights) if vision_weights is not None else None}
    write_json(folder / "config.json", config)
    return folder
