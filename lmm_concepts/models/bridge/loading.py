"""Booting a local checkpoint folder through sae-lens's `SAETransformerBridge`, offline, with clear errors.

The folder is checked before anything loads (config.json and its architecture, weights, tokenizer and processor
files), because the bridge itself swallows a processor that fails to load and, when torchvision is missing,
tries to `pip install` it.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.models.bridge.family import FamilySpec, family_for
from lmm_concepts.models.bridge.repairs import repair_bridge

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def read_folder(folder: str | Path) -> tuple[Path, dict[str, Any], FamilySpec]:
    """Check a checkpoint folder; return it, its config.json and the family spec of its architecture."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"no model folder at {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MissingInputError(f"no config.json in {folder}; pass a folder written by the model's save_pretrained")
    config = json.loads(config_path.read_text())
    archs = config.get("architectures") or []
    if not archs:
        raise InputError(f"{config_path} names no architecture (\"architectures\": [...]); set "
                         "model.config.architectures = [type(model).__name__] before save_pretrained")
    family = family_for(archs[0])
    if not [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]:
        raise MissingInputError(f"no weights (*.safetensors or pytorch_model*.bin) in {folder}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise MissingInputError(f"no tokenizer in {folder}: expected tokenizer.json (or one of {TOKENIZER_FILES[1:]}); "
                                "save it there with tokenizer.save_pretrained(folder)")
    if not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise MissingInputError(f"no image processor in {folder}: expected processor_config.json or "
                                "preprocessor_config.json; save the family's processor there with "
                                "processor.save_pretrained(folder)")
    return folder, config, family


def load_processor(folder: Path) -> Any:
    """The family's own HF processor (tokenizer + image processor + chat template), from local files only."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputError(f"the processor in {folder} does not load ({e}); save the family's processor there with "
                         "processor.save_pretrained(folder)") from e
    if getattr(processor, "tokenizer", None) is None or not callable(processor):
        raise InputError(f"{folder} holds a {type(processor).__name__}, not a multimodal processor with a tokenizer; "
                         "save the family's processor (e.g. LlavaProcessor) there with processor.save_pretrained")
    tokenizer = processor.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # left padding needs an id; the attention mask hides it
        logger.info("the tokenizer in %s has no pad token; padding with its EOS token", folder)
    return processor


def boot_bridge(folder: Path, dtype: torch.dtype, device: str | torch.device) -> Any:
    """An `SAETransformerBridge` over the folder's HF model (eager attention), corrected by `repair_bridge`."""
    from sae_lens import SAETransformerBridge

    with warnings.catch_warnings():
        # the vision towers' layers declare attention/MLP aliases their HF modules lack (4 warnings per layer)
        warnings.filterwarnings("ignore", message=r"Hook alias .* did not resolve")
        bridge = SAETransformerBridge.boot_transformers(str(folder), device=device, dtype=dtype)
    repair_bridge(bridge)
    return bridge.eval()
