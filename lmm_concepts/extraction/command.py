"""`lmm-concepts extract`: the command-line face of `lmm_concepts.extract`, with the same options."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmm_concepts.data import CocoKarpathy, CsvCaptions, HFDiskCaptions, JsonlCaptions
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.extraction.extract import extract


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
        from lmm_concepts.models import HookedLMM

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


@dataclass
class DataSpec:
    """Which image-caption dataset to read."""

    data: str = ""
    """dataset_coco.json (Karpathy), a .jsonl or .csv file, or a folder written by datasets.save_to_disk."""
    images: str | None = None
    """Image folder (default: the data file's folder; for COCO, the folder holding train2014/ and val2014/)."""
    format: str = "auto"
    """auto, coco, jsonl, csv or hf."""
    split: str | None = None
    """COCO: Karpathy split (default test); HF: split of a DatasetDict."""

    def load(self):
        path = Path(self.data)
        if not self.data or not path.exists():
            raise MissingInputError(f"--data {self.data!r}: no such file or folder")
        fmt = self.format
        if fmt == "auto":
            fmt = "hf" if path.is_dir() else {".jsonl": "jsonl", ".csv": "csv", ".json": "coco"}.get(path.suffix, "")
            if not fmt:
                raise InputError(f"cannot tell the format of {path}: pass --format coco|jsonl|csv|hf")
        if fmt == "coco":
            return CocoKarpathy(path, self.images or path.parent, split=self.split or "test")
        if fmt == "jsonl":
            return JsonlCaptions(path, self.images)
        if fmt == "csv":
            return CsvCaptions(path, self.images)
        if fmt == "hf":
            return HFDiskCaptions(path, split=self.split, image_root=self.images)
        raise InputError(f"unknown --format {fmt!r}: choose auto, coco, jsonl, csv or hf")


@dataclass
class ExtractConfig:
    """Caption a dataset and store the word's representations (see lmm_concepts.extract)."""

    token: str = ""
    """The word of interest (whole word, case-insensitive)."""
    out: str = "runs/extract"
    """Output folder of the store; rerunning the same command resumes an interrupted run."""
    layers: list[str] = field(default_factory=lambda: ["final"])
    """Layer indices (negative from the end), 'final' (after the final norm) or hook names."""
    position: str = "predicts"
    """'predicts' (position whose logits predict the word; the reference) or 'at' (the word's own position)."""
    batch_size: int = 16
    """Images per batch."""
    max_new_tokens: int = 20
    """Length limit of the generated captions."""
    prompt: str | None = None
    """Captioning prompt (default: the model's)."""
    plural: bool = False
    """Also accept plural forms of the word."""
    dtype: str = "float32"
    """Storage dtype: float32, float16 or bfloat16."""
    num_workers: int = 0
    """DataLoader workers decoding images."""
    overwrite: bool = False
    """Replace a store of another extraction in --out (only that store's own files are deleted)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)


def run(cfg: ExtractConfig) -> None:
    if not cfg.token:
        raise InputError("--token is required (the word of interest, e.g. --token dog)")
    dataset = cfg.data.load()  # before the (slow) model: a wrong path fails at once
    model = cfg.model.load()
    store = extract(
        model, dataset, cfg.token, cfg.layers, cfg.out, position=cfg.position, batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens, prompt=cfg.prompt, plural=cfg.plural, dtype=cfg.dtype,
        num_workers=cfg.num_workers, overwrite=cfg.overwrite,
    )  # fmt: skip
    funnel = ", ".join(f"{k} {v}" for k, v in store.funnel.items())
    print(f"{store.path}: {len(store)} samples × {len(store.layers)} layers ({funnel})")
