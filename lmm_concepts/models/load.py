"""Loading a model from local files, offline: `load_lmm(path)` and `ModelSpec` (the model options of every command).

`load_lmm` reads the folder's `config.json` and picks the backend:

    "toy"                              the toy DePALM shipped in the package (`lmm_concepts.zoo`), a `HookedLMM`
    a DePALM folder                    `HookedLMM` (the only backend for DePALM): `config.json` with
                                       "model_type": "depalm" naming the language model's folder, the connector
                                       and the vision tower (`models.depalm.read_depalm_folder`;
                                       `HookedLMM.save_depalm` writes one)
    an architecture the bridge serves  `BridgeLMM` (`models.bridge.supported_architectures()`), the HF model as it is
    LlavaForConditionalGeneration      both serve LLaVA-1.5; the bridge by default, `backend="hooked"` for HookedLMM

Why the bridge serves LLaVA-1.5 by default: it runs HF's own modules (logits equal HF's forward exactly, 0.0 on the
parity test, where HookedLMM's conversion onto TransformerLens gives 1.8e-6) and HF's own `generate` (captions are
HF's tokens by construction); it converts no weights; it is the backend of every other family, so LLaVA-1.5 gets
the same hook names and behaviour as they do; and TransformerLens 3.9 marks `HookedTransformer` deprecated in
favour of `TransformerBridge`. `backend="hooked"` keeps HookedLMM reachable (stores extracted with it record its
identity, and TransformerLens's `HookedTransformer` tools work on it).

Nothing here reaches a hub: every file comes from the folder, and a missing one is named.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmm_concepts._dtypes import torch_dtype
from lmm_concepts.errors import InputError, MissingInputError

if TYPE_CHECKING:  # torch is imported when a model loads: ModelSpec is an option group of light CLI modules
    import torch

    from lmm_concepts.models.interface import LMM

BACKENDS = ("bridge", "hooked")
HOOKED_ARCHITECTURES = ("LlavaForConditionalGeneration",)
"""HF architectures HookedLMM converts (besides DePALM folders and the toy)."""
TOY = "toy"


def load_lmm(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device | None = None, *,
             backend: str | None = None) -> LMM:
    """The model in `path` (a local folder, or "toy") as an `LMM`, in `dtype` (default float32), on `device`
    (default: cuda when available).

    `backend`: None picks the one that serves the folder's architecture (see the module docstring); "bridge" or
    "hooked" asks for one, refused when it does not serve that architecture."""
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS} or None (the default for the architecture), got "
                         f"{backend!r}")
    import torch

    dtype = torch.float32 if dtype is None else dtype
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if str(path) == TOY:
        return _toy(dtype, device, backend)
    folder = Path(path).expanduser()
    config = read_config(folder)
    from lmm_concepts.models.depalm import is_depalm_config

    if is_depalm_config(config):
        return _depalm(folder, config, dtype, device, backend)
    architecture = _architecture(folder, config)
    backend = backend or default_backend(architecture)
    if backend == "bridge":
        from lmm_concepts.models.bridge import BridgeLMM

        return BridgeLMM.from_folder(folder, dtype=dtype, device=device)
    if architecture not in HOOKED_ARCHITECTURES:
        raise InputError(f"HookedLMM does not serve {architecture!r} ({folder}); it serves {list(HOOKED_ARCHITECTURES)}, "
                         "DePALM folders and the toy: leave backend unset to use the bridge, which serves "
                         f"{_bridge_architectures()}")
    _check_files(folder)
    from lmm_concepts.models.hooked_lmm import HookedLMM

    return HookedLMM.llava(folder, dtype=dtype, device=device)


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's `config.json` as a dict, or an error naming what is missing or damaged."""
    if not folder.is_dir():
        raise MissingInputError(f"no model folder at {folder}: give a local folder written by the model's "
                                "save_pretrained, a DePALM folder, or 'toy'")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MissingInputError(f"no config.json in {folder}: give a folder written by the model's save_pretrained "
                                "(or a DePALM folder, see HookedLMM.save_depalm)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{config_path} is not valid JSON ({err}); repair or replace it") from None
    if not isinstance(config, dict):
        raise InputError(f"{config_path} is not a JSON object; repair or replace it")
    return config


def default_backend(architecture: str) -> str:
    """The backend that serves `architecture` by default: the bridge wherever it can (LLaVA-1.5 included)."""
    if architecture in _bridge_architectures():
        return "bridge"
    if architecture in HOOKED_ARCHITECTURES:
        return "hooked"
    raise InputError(f"no backend serves the architecture {architecture!r}: the bridge backend serves "
                     f"{_bridge_architectures()}; HookedLMM serves {list(HOOKED_ARCHITECTURES)} (backend='hooked'), "
                     "DePALM folders (config.json with \"model_type\": \"depalm\", see HookedLMM.save_depalm) and "
                     "the toy ('toy')")


def _bridge_architectures() -> list[str]:
    from lmm_concepts.models.bridge import supported_architectures

    return supported_architectures()


def _architecture(folder: Path, config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    if not archs:
        raise InputError(f"{folder / 'config.json'} names no architecture (\"architectures\": [...]); set "
                         "model.config.architectures = [type(model).__name__] before save_pretrained")
    architecture = str(archs[0])
    if architecture.endswith(("ForCausalLM", "LMHeadModel")):
        raise InputError(f"{folder} holds a language model ({architecture}), not a multimodal one: for DePALM, write "
                         "a DePALM folder naming it (HookedLMM.save_depalm), or give --connector with this folder")
    return architecture


def _check_files(folder: Path) -> None:
    """The files HookedLMM.llava reads: weights and a tokenizer."""
    from lmm_concepts.models.bridge.loading import TOKENIZER_FILES

    if not [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]:
        raise MissingInputError(f"no weights (*.safetensors or pytorch_model*.bin) in {folder}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise MissingInputError(f"no tokenizer in {folder}: expected tokenizer.json (or one of {TOKENIZER_FILES[1:]}); "
                                "save it there with tokenizer.save_pretrained(folder)")


def _toy(dtype: torch.dtype, device, backend: str | None) -> LMM:
    if backend == "bridge":
        raise InputError("the toy is a HookedLMM (a DePALM on a TransformerLens language model): the bridge backend "
                         "does not serve it; leave backend unset")
    from lmm_concepts.zoo.toy import load_toy

    model = load_toy(device=device)
    import torch

    return model.to(dtype) if dtype != torch.float32 else model


def _depalm(folder: Path, config: dict[str, Any], dtype: torch.dtype, device, backend: str | None) -> LMM:
    if backend == "bridge":
        raise InputError(f"{folder} is a DePALM folder: only HookedLMM serves DePALM; leave backend unset")
    from lmm_concepts.models.depalm import read_depalm_folder
    from lmm_concepts.models.hooked_lmm import HookedLMM

    parts = read_depalm_folder(folder, config)
    return HookedLMM.depalm(llm=parts.language_model, vision=parts.vision, vision_weights=parts.vision_weights,
                            connector=parts.connector, apply_ln_post=parts.apply_ln_post, dtype=dtype, device=device)


@dataclass
class ModelSpec:
    """Which model to load, offline, from local files (`load_lmm`)."""

    model: str = TOY
    """"toy" (the embedded default), a local model folder: any architecture the bridge backend serves (LLaVA-1.5,
    ...), a DePALM folder (config.json "model_type": "depalm"; HookedLMM.save_depalm writes one), or a DePALM
    language-model folder with --connector; or "package.module:function" returning a model."""
    backend: str | None = None
    """'bridge' or 'hooked' (default: the one serving the architecture; the bridge for LLaVA-1.5)."""
    connector: str | None = None
    """DePALM from parts: the trained connector (.safetensors written by HookedLMM.save_connector), with --model the
    language model's folder."""
    vision: str = "ViT-L-14"
    """DePALM from parts: the open_clip architecture of the vision tower."""
    vision_weights: str | None = None
    """DePALM from parts: local open_clip checkpoint of the vision tower."""
    device: str | None = None
    """Device to run on (default: cuda when available, else cpu)."""
    model_dtype: str = "float32"
    """Weights dtype: float32, float16, bfloat16 or float64."""

    def load(self) -> LMM:
        import torch

        dtype = torch_dtype(self.model_dtype, option="--model_dtype")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if ":" in self.model and not Path(self.model).exists():
            module, _, fn = self.model.partition(":")
            try:
                factory = getattr(importlib.import_module(module), fn)
            except (ImportError, AttributeError) as err:
                raise InputError(f"--model {self.model}: cannot import it ({err}); give module:function") from None
            return factory()
        if self.connector is not None:  # DePALM from its parts: a language-model folder and a connector file
            from lmm_concepts.models.hooked_lmm import HookedLMM

            read_config(Path(self.model))
            return HookedLMM.depalm(llm=self.model, vision=self.vision, vision_weights=self.vision_weights,
                                    connector=self.connector, dtype=dtype, device=device)
        if self.model != TOY and not (Path(self.model) / "config.json").is_file():
            raise MissingInputError(
                f"--model {self.model}: not 'toy', not a folder with config.json, not module:function; "
                "give a local model folder"
            )
        return load_lmm(self.model, dtype=dtype, device=device, backend=self.backend)
