"""Which model to load, offline, from local files: `ModelSpec`, the model options of every command."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lmm_concepts.errors import InputError, MissingInputError


@dataclass
class ModelSpec:
    """Which model to load, offline, from local files."""

    model: str = "toy"
    """"toy" (the embedded default), a LLaVA-1.5 folder (HF save_pretrained), a DePALM language-model folder
    (then give --connector), or "package.module:function" returning a HookedLMM."""
    connector: str | None = None
    """DePALM: the trained connector (.safetensors written by HookedLMM.save_connector)."""
    vision: str = "ViT-L-14"
    """DePALM: the open_clip architecture of the vision tower."""
    vision_weights: str | None = None
    """DePALM: local open_clip checkpoint of the vision tower."""
    device: str | None = None
    """Device to run on (default: cuda when available, else cpu)."""
    model_dtype: str = "float32"
    """Weights dtype: float32, float16 or bfloat16."""

    def load(self):
        from lmm_concepts.models.hooked_lmm import HookedLMM

        dtype = getattr(torch, self.model_dtype)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.model == "toy":
            return HookedLMM.toy().to(device)
        if ":" in self.model and not Path(self.model).exists():
            module, _, fn = self.model.partition(":")
            try:
                factory = getattr(importlib.import_module(module), fn)
            except (ImportError, AttributeError) as err:
                raise InputError(f"--model {self.model}: cannot import it ({err}); give module:function") from None
            return factory()
        folder = Path(self.model)
        if not (folder / "config.json").is_file():
            raise MissingInputError(
                f"--model {self.model}: not 'toy', not a folder with config.json, not module:function; "
                "give a local LLaVA or language-model folder"
            )
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (UnicodeDecodeError, ValueError, AttributeError) as err:
            raise InputError(f"{folder / 'config.json'} is not a JSON object ({err}); repair or replace it") from None
        if model_type == "llava":
            return HookedLMM.llava(folder, dtype=dtype, device=device)
        if self.connector is None:
            raise InputError(f"{folder} is a language model: DePALM also needs --connector <file.safetensors>")
        return HookedLMM.depalm(
            llm=folder, vision=self.vision, vision_weights=self.vision_weights, connector=self.connector,
            dtype=dtype, device=device,
        )  # fmt: skip
