"""HF causal LM -> TransformerLens `HookedTransformer`, offline and without a second full copy in memory.

TransformerLens's `from_pretrained` asks the hub for the config. Its lower-level helpers
(`get_pretrained_model_config`, `get_pretrained_state_dict`) accept a local folder, but guess the
architecture from the folder's *name* when it contains "llama" or "gemma" and then never read its
`config.json`. So the config is always written to a fresh, neutrally named temporary folder first.

Weights are taken as the checkpoint has them (no LayerNorm folding, no centring, no value-bias folding):
`W_U` is the checkpoint's `lm_head` and residual vectors equal HF's hidden states.

Memory: the TransformerLens model is built with meta-device parameters, and the converted weights are moved
in block by block, each HF block released as soon as it is converted. Peak memory stays near one copy of
the model (see `benchmarks/bench_loading.py`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import nn
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as tl_loading

# Architectures TransformerLens 3.9 converts and that this package tests.
SUPPORTED_ARCHITECTURES = ("GPT2LMHeadModel", "OPTForCausalLM", "LlamaForCausalLM")
_NAME_TRAPS = ("llama", "gemma")
_HF_LAYER = re.compile(r"(?:^|\.)(?:h|layers)\.(\d+)\.")
_TL_LAYER = re.compile(r"^blocks\.(\d+)\.")
_MADV_DONTNEED = 4
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform.startswith("linux") else None


def _neutral_config_dir(hf_config) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="lmm_cfg_")
    if any(t in tmp.name.lower() for t in _NAME_TRAPS):
        tmp.cleanup()
        raise RuntimeError(f"the temporary folder {tmp.name!r} contains 'llama'/'gemma', which makes TransformerLens "
                           "ignore config.json; set TMPDIR to a folder without those words")
    hf_config.to_json_file(str(Path(tmp.name) / "config.json"))
    return tmp


def check_architecture(hf_config) -> str:
    archs = getattr(hf_config, "architectures", None) or []
    if not archs:
        raise ValueError("the HF config has no 'architectures' entry; set config.architectures = ['OPTForCausalLM'] "
                         "(or the model's class name) before saving it")
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"unsupported language model architecture {arch!r}; supported: {SUPPORTED_ARCHITECTURES}")
    return arch


def hooked_config(hf_model: nn.Module, dtype: torch.dtype, device, **overrides: Any):
    """The `HookedTransformerConfig` of an HF causal LM, read from its config only (no network, no name guessing)."""
    hf_config = hf_model.config
    if not getattr(hf_config, "architectures", None):
        hf_config.architectures = [type(hf_model).__name__]
    check_architecture(hf_config)
    with _neutral_config_dir(hf_config) as folder:
        cfg = tl_loading.get_pretrained_model_config(
            folder, hf_cfg=hf_config.to_dict(), fold_ln=False, device=device, dtype=dtype, **overrides
        )
    cfg.model_name = getattr(hf_config, "_name_or_path", "") or cfg.model_name
    cfg.tokenizer_name = None
    return cfg


def hf_to_hooked(hf_model: nn.Module, tokenizer=None, *, dtype: torch.dtype | None = None,
                 device: str | torch.device | None = None, cls: type[HookedTransformer] = HookedTransformer,
                 release_hf: bool = True, **cfg_overrides: Any) -> HookedTransformer:
    """Convert an HF causal LM into `cls` (a HookedTransformer subclass) without weight processing.

    With `release_hf=True` the HF model's parameters are freed block by block while converting (the HF model
    is unusable afterwards); this is what keeps a 7B model under ~1x its size in memory."""
    if dtype is None:
        dtype = next(hf_model.parameters()).dtype
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    cfg = hooked_config(hf_model, dtype, device, **cfg_overrides)
    with _neutral_config_dir(hf_model.config) as folder:
        state = tl_loading.get_pretrained_state_dict(folder, cfg, hf_model)
    with init_empty_weights(include_buffers=False):
        model = cls(cfg, None, move_to_device=False)
    attach_tokenizer(model, tokenizer)
    for module in model.modules():  # buffers (rotary tables, masks) are real and small; parameters are meta
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = buf.to(device)
    _assign_blockwise(model, state, hf_model if release_hf else None, device, dtype)
    model.cfg.device = str(device)
    return model


def attach_tokenizer(model: HookedTransformer, tokenizer, padding_side: str = "left") -> None:
    """Give `model` the tokenizer as it is. (TransformerLens's `set_tokenizer` reloads it by name with
    `add_bos_token=True`, which needs the hub and changes how prompts tokenize.)"""
    model.tokenizer = tokenizer
    if tokenizer is None:
        return
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.cfg.tokenizer_prepends_bos = len(tokenizer.encode("")) > 0
    if not model.cfg.tokenizer_prepends_bos:
        model.cfg.default_prepend_bos = False


def _assign_blockwise(model: nn.Module, state: dict[str, torch.Tensor], hf_model: nn.Module | None,
                      device: torch.device, dtype: torch.dtype) -> None:
    own = dict(model.named_parameters())
    unexpected = sorted(set(state) - set(own) - {k for k, _ in model.named_buffers()})
    if unexpected:
        raise ValueError(f"converted weights have names the model lacks: {unexpected[:5]}")
    by_block: dict[int, list[str]] = defaultdict(list)
    for name in own:
        m = _TL_LAYER.match(name)
        by_block[int(m.group(1)) if m else -1].append(name)
    hf_by_layer: dict[int, list[nn.Parameter]] = defaultdict(list)
    if hf_model is not None:
        for name, p in hf_model.named_parameters():
            m = _HF_LAYER.search(name)
            hf_by_layer[int(m.group(1)) if m else -1].append(p)
    for block in [*sorted(k for k in by_block if k >= 0), -1]:
        tensors = {}
        for name in by_block.get(block, []):
            if name not in state:
                t = _default_for_missing(name, own[name])
            else:
                t = state.pop(name)
            if t.shape != own[name].shape:
                raise ValueError(f"weight {name} has shape {tuple(t.shape)} but the config implies "
                                 f"{tuple(own[name].shape)}; the checkpoint does not match its config.json")
            # always a fresh copy: a view would keep the HF checkpoint's memory map (or storage) alive
            fresh = torch.empty(t.shape, dtype=dtype, device=device)
            fresh.copy_(t)
            del t
            tensors[name] = nn.Parameter(fresh, requires_grad=False)
        for name, p in tensors.items():
            module_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(module_name), attr, p)
        for p in hf_by_layer.get(block, []):
            _drop_pages(p.data)
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
    for name, t in state.items():  # buffers the conversion provides (rare)
        module_name, _, attr = name.rpartition(".")
        getattr(model.get_submodule(module_name), attr).copy_(t)
    for p in model.parameters():
        p.requires_grad_(True)


def _drop_pages(t: torch.Tensor) -> None:
    """Return a converted HF tensor's memory pages to the OS now (Linux `madvise(MADV_DONTNEED)`).

    HF maps safetensors files into memory; pages read while converting stay in the process's resident set until
    the whole mapping is closed, which would double the peak. Only whole pages inside the tensor are dropped
    (neighbouring tensors are untouched); a file-backed page would simply be re-read if ever touched again.
    Called only on tensors of an HF model we loaded ourselves and are discarding."""
    if t.device.type != "cpu" or t.numel() == 0 or _LIBC is None:
        return
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def _default_for_missing(name: str, meta: torch.Tensor) -> torch.Tensor:
    """TransformerLens's defaults for weights an architecture lacks: zero biases, unit norm gains."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf.startswith("b"):
        return torch.zeros(meta.shape)
    if leaf == "w":
        return torch.ones(meta.shape)
    raise ValueError(f"the checkpoint has no weight for {name}; it does not match its config")


def load_hf_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32):
    """An HF causal LM from a local folder (safetensors or `weights_only` torch files; never pickle, never the hub)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}; pass a folder written by save_pretrained")
    weights = [*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")]
    if not weights:
        raise FileNotFoundError(f"no weights (*.safetensors or pytorch_model*.bin) in {path}")
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    check_architecture(config)
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), config=config, dtype=dtype, local_files_only=True,
                                                    use_safetensors=any(w.suffix == ".safetensors" for w in weights))
    except (RuntimeError, ValueError) as e:
        if any(w in str(e) for w in ("size mismatch", "shape", "mismatched")):
            raise ValueError(f"the weights in {path} do not fit its config.json: {e}") from e
        raise


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    path = Path(path)
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"no usable tokenizer in {path} ({e}); save one there with tokenizer.save_pretrained") from e


def read_json_config(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
