"""`BridgeLMM`: the `LMM` interface over a Hugging Face multimodal model wrapped by TransformerLens's bridge.

The HF model is kept as it is; sae-lens's `SAETransformerBridge` puts TransformerLens hook points inside it
(`blocks.{L}.hook_resid_post`, `ln_final.hook_out`, `vision_projector.hook_out`, ...) and gives `add_sae`. It is
held, not subclassed, as `.bridge`; what differs between families lives in a `FamilySpec` (`family.py`).

- Forward passes run the HF forward through the bridge with explicit positions (HF generate's: cumsum of the
  mask - 1), so left-padded rows give the logits HF gives them.
- Captions come from HF's own `generate` on the bridged model: the bridge's hook points sit inside the HF
  modules, so hooks added with `hooks()` act at every decoding step, and greedy / beam tokens are HF's by
  construction (measured identical on left-padded batches, see tests/test_bridge_llava.py). With no hook and no
  SAE anywhere, `generate` runs on the bare HF modules instead (`bare.py`): the same tokens, HF's speed.
- A placeholder the model generates mid-caption is an ordinary token, as in HF generate; run back as part of a
  whole sequence it keeps that meaning (`models/placeholders.py`): its id goes to the HF forward as padding and
  its embedding is written back on the embedding's output.
- sae-lens's `SAETransformerBridge.hook_dict` drops TransformerLens's alias names (`blocks.0.hook_resid_post`
  is an alias of `blocks.0.hook_out`), and the bridge's `hooks()` silently ignores names it does not know.
  Here every alias resolves and an unknown name is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from PIL import Image
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge

from lmm_concepts.models.bridge.bare import bare_hf, hooks_could_fire
from lmm_concepts.models.bridge.family import FamilySpec, placeholder_counts
from lmm_concepts.models.bridge.loading import boot_bridge, load_processor, read_folder
from lmm_concepts.models.generation import finish_output
from lmm_concepts.models.interface import (
    FINAL_HOOK,
    GenerationOutput,
    Hook,
    ModelInputs,
    stop_after,
    weights_digest,
)
from lmm_concepts.models.placeholders import image_positions
from lmm_concepts.models.preprocessing import load_image


class BridgeLMM:
    """Implements `lmm_concepts.models.interface.LMM` on an `SAETransformerBridge` (see the module docstring)."""

    def __init__(self, bridge: TransformerBridge, processor: Any, family: FamilySpec, architecture: str):
        self.bridge = bridge
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.family = family
        self.architecture = architecture

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: torch.dtype = torch.float32,
                    device: str | torch.device | None = None) -> BridgeLMM:
        """A checkpoint folder written by `save_pretrained` (model, tokenizer and the family's processor), offline."""
        folder, config, family = read_folder(folder)
        processor = load_processor(folder)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(boot_bridge(folder, dtype, device), processor, family, config["architectures"][0])

    # ------------------------------------------------------------------ the HF model and its parts
    @property
    def hf_model(self) -> nn.Module:
        """The HF model, its modules wrapped by the bridge's components."""
        return self.bridge.original_model

    @property
    def config(self) -> Any:
        return self.hf_model.config

    def _unembedding(self) -> nn.Module:
        """The HF unembedding (`lm_head`) itself, not its bridge component."""
        return _hf_module(self.bridge.unembed)

    def _embedding(self) -> nn.Module:
        """The HF token embedding itself (Gemma's scaling included), not its bridge component."""
        return _hf_module(self.bridge.embed)

    # ------------------------------------------------------------------ the LMM interface: dimensions, identity
    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def device(self) -> torch.device:
        return self._embedding().weight.device

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self._unembedding().weight.T

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        lm_head = self._unembedding()
        bias = getattr(lm_head, "bias", None)
        return bias if bias is not None else lm_head.weight.new_zeros(lm_head.weight.shape[0])

    @property
    def training(self) -> bool:
        return self.bridge.training

    def eval(self) -> BridgeLMM:
        self.bridge.eval()
        return self

    def train(self, mode: bool = True) -> BridgeLMM:
        self.bridge.train(mode)
        return self

    def to(self, device: str | torch.device) -> BridgeLMM:
        self.bridge.to(device)
        return self

    def identity(self) -> dict[str, Any]:
        config = {k: v for k, v in self.config.to_diff_dict().items() if k not in ("_name_or_path", "transformers_version")}
        config_json = json.dumps(config, sort_keys=True, default=str)
        params = ((name.replace("._original_component", ""), p) for name, p in self.hf_model.named_parameters())
        return {
            "class": type(self).__name__,
            "config": {"family": self.family.name, "architecture": self.architecture,
                       "config_digest": hashlib.sha256(config_json.encode()).hexdigest()[:16]},
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "weights_digest": weights_digest(params),
        }

    # ------------------------------------------------------------------ hooks
    def _hook_points(self) -> dict[str, HookPoint]:
        """Every hook point by canonical and alias name (sae-lens's `hook_dict` lacks the aliases)."""
        with_aliases = TransformerBridge.hook_dict.fget(self.bridge)
        return {name: hp for name, hp in {**with_aliases, **self.bridge.hook_dict}.items() if isinstance(hp, HookPoint)}

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        return self._hook_points()

    def _canonical(self, hooks: Sequence[Hook]) -> list[Hook]:
        points = self._hook_points()
        resolved = []
        for name, fn in hooks:
            if isinstance(name, str):
                if name not in points:
                    raise ValueError(f"the model has no hook point {name!r}; use {FINAL_HOOK!r}, "
                                     f"'blocks.{{L}}.hook_resid_post' (L < {self.n_layers}) or another name in "
                                     "model.hook_dict")
                name = points[name].name or name
            resolved.append((name, fn))
        return resolved

    def hooks(self, fwd_hooks: Sequence[Hook] = (), bwd_hooks: Sequence[Hook] = (), reset_hooks_end: bool = True,
              clear_contexts: bool = False) -> AbstractContextManager[Any]:
        """TransformerLens's context manager; names are checked and aliases resolved first."""
        return self.bridge.hooks(fwd_hooks=self._canonical(fwd_hooks), bwd_hooks=self._canonical(bwd_hooks),
                                 reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts)

    def add_sae(self, sae: Any, use_error_term: bool | None = None) -> None:
        """sae-lens's `SAETransformerBridge.add_sae` (the SAE's hook name may be an alias)."""
        self.bridge.add_sae(sae, use_error_term=use_error_term)

    def reset_saes(self, act_names: str | list[str] | None = None) -> None:
        """sae-lens's `reset_saes`, then every hook point named by its place again: sae-lens puts a new hook
        point where the SAE was, and the bridge's component renames it to its attribute name ("hook_out"), which
        hooks by the canonical name ("blocks.0.hook_out") then never reach."""
        self.bridge.reset_saes(act_names)
        for name, point in self.bridge.hook_dict.items():
            if isinstance(point, HookPoint) and point.name != name:
                point.name = name

    # ------------------------------------------------------------------ inputs
    def build_inputs(self, images: Any, prompt: str | list[str] | None = None, max_new_tokens: int = 0) -> ModelInputs:
        """PIL images or paths (one per sample) and a prompt (None: the family's captioning prompt in its chat
        template; a string must hold the family's image marker once) -> a left-padded batch on `self.device`."""
        images = _one_image_per_sample(images)
        prompts = [prompt] * len(images) if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(images):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; give one prompt per image or a "
                             "single string")
        prompts = [self.family.caption_prompt(self.processor) if p is None else p for p in prompts]
        for p in prompts:
            self.family.check_prompt(self.processor, p)
        batch = self.family.process(self.processor, prompts, images)
        missing = [k for k in self.family.image_keys if k not in batch]
        if missing:
            raise ValueError(f"the {type(self.processor).__name__} returned no {missing} for these images")
        inputs = ModelInputs(batch["input_ids"], batch["attention_mask"],
                             {k: batch[k] for k in self.family.image_keys}).to(self.device)
        n_ctx = int(getattr(self.config.get_text_config(), "max_position_embeddings", 0) or 0)
        if n_ctx and inputs.input_ids.shape[1] + max_new_tokens > n_ctx:
            raise ValueError(f"prompt of {inputs.input_ids.shape[1]} tokens (image tokens included) plus "
                             f"{max_new_tokens} new tokens exceeds the context of {n_ctx}; shorten the prompt or "
                             "lower max_new_tokens")
        self._placeholders(inputs)  # every row holds its image's tokens
        return inputs

    def _placeholders(self, inputs: ModelInputs) -> tuple[Bool[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """(placeholders that take the image, placeholders the model generated: ordinary tokens)."""
        image_id = self.family.image_token_id(self.config)
        is_placeholder = inputs.input_ids == image_id
        counts = placeholder_counts(self.family, self.config, inputs)
        takes_image = is_placeholder if counts is None else image_positions(inputs.input_ids, image_id, counts)
        return takes_image, is_placeholder & ~takes_image

    def _forward_kwargs(self, inputs: ModelInputs) -> tuple[dict[str, Any], Bool[Tensor, "batch pos"]]:
        """The bridge forward's keyword arguments for `inputs`, and where ordinary placeholders sit."""
        inputs = inputs.to(self.device)
        takes_image, ordinary = self._placeholders(inputs)
        input_ids = inputs.input_ids
        if ordinary.any():
            input_ids = input_ids.masked_fill(ordinary, self._pad_token_id())
        kwargs = {"input": input_ids, "attention_mask": inputs.attention_mask,
                  **self.family.forward_kwargs(inputs, takes_image)}
        positions = self.family.position_ids(inputs)
        if positions is not None:
            kwargs["position_ids"] = positions
        return kwargs, ordinary

    @contextmanager
    def _ordinary_placeholders(self, ordinary: Bool[Tensor, "batch pos"]) -> Iterator[None]:
        """Write the placeholder's own embedding where `ordinary` is set (their ids reached the model as padding)."""
        if not ordinary.any():
            yield
            return
        embedding = self._embedding()
        with torch.no_grad():
            own = embedding(torch.tensor([self.family.image_token_id(self.config)], device=self.device))[0]

        def write(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
            if output.shape[:2] != ordinary.shape:
                return None
            output = output.clone()
            output[ordinary.to(output.device)] = own.to(output.dtype)
            return output

        handle = embedding.register_forward_hook(write)
        try:
            yield
        finally:
            handle.remove()

    def _pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    # ------------------------------------------------------------------ forward passes
    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None, **images: Tensor) -> Tensor:
        """Logits for a batch given as tensors (`model(**inputs)`)."""
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        return self.logits(ModelInputs(input_ids, mask, images))

    def logits(self, inputs: ModelInputs, fwd_hooks: Sequence[Hook] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """HF's logits (the family's soft-capping included), with `fwd_hooks` active."""
        kwargs, ordinary = self._forward_kwargs(inputs)
        with self.hooks(fwd_hooks=fwd_hooks), self._ordinary_placeholders(ordinary):
            return self.bridge(**kwargs)

    def capture(self, inputs: ModelInputs, names: Sequence[str], fwd_hooks: Sequence[Hook] = ()) -> dict[str, Tensor]:
        """Activations at `names` only; blocks after the last one needed are never run."""
        names = list(names)
        return self._run(inputs, names, fwd_hooks, stop_at_layer=stop_after(names, self.n_layers))[1]

    def run_with_cache(self, inputs: ModelInputs, names: Sequence[str] | None = None,
                       fwd_hooks: Sequence[Hook] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and the activations at `names` (None: every hook point the bridge caches, under its canonical
        and alias names) in one forward pass."""
        if names is not None:
            return self._run(inputs, list(names), fwd_hooks, stop_at_layer=None)
        kwargs, ordinary = self._forward_kwargs(inputs)
        with self.hooks(fwd_hooks=fwd_hooks), self._ordinary_placeholders(ordinary):
            logits, cache = self.bridge.run_with_cache(**kwargs)
        acts = dict(cache.items())
        acts.update({alias: acts[hp.name] for alias, hp in self._hook_points().items() if hp.name in acts})
        return logits, acts

    def _run(self, inputs: ModelInputs, names: list[str], fwd_hooks: Sequence[Hook],
             stop_at_layer: int | None) -> tuple[Tensor | None, dict[str, Tensor]]:
        cache: dict[str, Tensor] = {}

        def keeper(name: str):
            def keep(activation: Tensor, hook: HookPoint) -> None:
                cache[name] = activation
            return keep

        kwargs, ordinary = self._forward_kwargs(inputs)
        keepers = [(n, keeper(n)) for n in names]
        with self.hooks(fwd_hooks=[*fwd_hooks, *keepers]), self._ordinary_placeholders(ordinary):
            logits = self.bridge(**kwargs, return_type=None if stop_at_layer is not None else "logits",
                                 stop_at_layer=stop_at_layer)
        missing = [n for n in names if n not in cache]
        if missing:
            raise ValueError(f"no activation reached the hooks {missing}: they are not on this forward's path")
        return logits, cache

    def encode_images_once(self, inputs: ModelInputs) -> ModelInputs:
        """`inputs` as they are: HF's forward encodes its images itself on every call (see `LMM`)."""
        return inputs

    def final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The HF final norm itself (no hook fires)."""
        return _hf_module(self.bridge.ln_final)(x.to(self.W_U.dtype))

    def unembed_vectors(self, x: Float[Tensor, "... d_model"], use_bias: bool = False) -> Float[Tensor, "... d_vocab"]:
        logits = x.to(self.W_U.dtype) @ self.W_U
        if use_bias:
            logits = logits + self.b_U
        cap = self.family.final_logit_softcap(self.config)
        return cap * torch.tanh(logits / cap) if cap else logits

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, images: Any, prompt: str | list[str] | None = None, max_new_tokens: int = 20,
                 num_beams: int = 1, eos_token_id: int | list[int] | None = -1,
                 length_penalty: float = 1.0) -> GenerationOutput:
        """Caption a batch of images with HF `generate` (greedy, or beam search), left padding and the KV cache.

        `eos_token_id=-1` means the checkpoint's (its generation config's, else the tokenizer's); None never
        stops early."""
        inputs = self.build_inputs(images, prompt, max_new_tokens=max_new_tokens)
        return self.generate_from_inputs(inputs, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                         eos_token_id=eos_token_id, length_penalty=length_penalty)

    @torch.no_grad()
    def generate_from_inputs(self, inputs: ModelInputs, max_new_tokens: int = 20, num_beams: int = 1,
                             eos_token_id: int | list[int] | None = -1, length_penalty: float = 1.0) -> GenerationOutput:
        """`generate` from a batch already built (`build_inputs`)."""
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if eos_token_id == -1:
            eos_token_id = self.hf_model.generation_config.eos_token_id
            if eos_token_id is None:
                eos_token_id = self.tokenizer.eos_token_id
        inputs = inputs.to(self.device)
        kwargs, ordinary = self._forward_kwargs(inputs)
        if ordinary.any():
            raise ValueError("the prompt holds more image placeholders than its image takes; generate from a prompt "
                             "built by build_inputs()")
        pad = self._pad_token_id()
        image_kwargs = {k: v for k, v in kwargs.items() if k not in ("input", "attention_mask", "position_ids")}
        # no hook can fire: the bare HF modules (the same results, without the bridge's per-call overhead)
        hf = nullcontext(self.hf_model) if hooks_could_fire(self.bridge, self.hf_model) else bare_hf(self.hf_model)
        with hf as model:
            sequences = model.generate(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **image_kwargs,
                max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, length_penalty=length_penalty,
                repetition_penalty=1.0, no_repeat_ngram_size=0, pad_token_id=pad,
                eos_token_id=eos_token_id if eos_token_id is not None else [], use_cache=True,
            )
        generated = sequences[:, inputs.input_ids.shape[1]:]
        return finish_output(self, inputs.input_ids, inputs.attention_mask, inputs.images, generated, eos_token_id,
                             pad, max_new_tokens)


def _hf_module(component: nn.Module) -> nn.Module:
    """The HF module a bridge component wraps (calling it fires no hook)."""
    original = getattr(component, "original_component", None)
    return original if original is not None else component


def _one_image_per_sample(images: Any) -> list[Image.Image]:
    if isinstance(images, (Image.Image, str, Path)):
        images = [images]
    if isinstance(images, Tensor):
        raise TypeError("pass PIL images or image paths (the family's processor prepares them); a batch already "
                        "prepared goes to logits() / capture() / generate_from_inputs() as a ModelInputs")
    images = list(images)
    nested = [i for i, im in enumerate(images) if isinstance(im, (list, tuple))]
    if nested:
        raise ValueError(f"sample {nested[0]} holds {len(images[nested[0]])} images; lmm-concepts reads one image per "
                         "sample: pass a flat list, one image per prompt")
    return [load_image(im) for im in images]

