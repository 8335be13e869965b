"""`HookedLMM`: vision encoder -> connector -> visual tokens placed inside the prompt of a TransformerLens LLM.

It *is* the language model (a sae-lens `HookedSAETransformer`), so every TransformerLens hook name
(`blocks.{L}.hook_resid_post`, `ln_final.hook_scale`, ..., plus `ln_final.hook_out`), `run_with_cache`, `run_with_hooks`,
`add_sae` and the logit-lens tools (`W_U`, `unembed`, `ln_final`) work unchanged. The vision encoder and
the connector are extra submodules with their own hook points, `hook_vision_features` and
`hook_visual_tokens`.

`input_ids` hold one placeholder id (`lmm_cfg.image_token_id`) per visual token. A forward hook on
`embed` writes the visual tokens over the placeholders' embeddings; the placeholder ids themselves are
swapped for a valid id before the lookup, so an id outside the vocabulary (GPT-2) never indexes out of
range. Later decoding steps carry no placeholders, so the hook leaves them alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from PIL import Image
from sae_lens import HookedSAETransformer
from torch import Tensor, nn
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from lmm_concepts._io import write_json, write_safetensors
from lmm_concepts.models.checkpoints import load_weights_checked  # noqa: F401  (importable here too)
from lmm_concepts.models.config import LMMConfig
from lmm_concepts.models.connectors import connector_config, load_connector_file
from lmm_concepts.models.generation import GenerationOutput, beam_search, finish_output, greedy_decode
from lmm_concepts.models.interface import FINAL_HOOK, Hook, ModelInputs, stop_after, weights_digest
from lmm_concepts.models.loading import attach_tokenizer
from lmm_concepts.models.placeholders import image_positions
from lmm_concepts.models.preprocessing import ImageLike, ImagePreprocessor


class HookedLMM(HookedSAETransformer):
    """Implements `lmm_concepts.models.interface.LMM` on a TransformerLens `HookedTransformer`."""

    vision: nn.Module
    connector: nn.Module
    lmm_cfg: LMMConfig

    def __init__(self, cfg, tokenizer=None, lmm_cfg: LMMConfig | None = None, vision: nn.Module | None = None,
                 connector: nn.Module | None = None, move_to_device: bool = True):
        super().__init__(cfg, tokenizer=None, move_to_device=move_to_device)
        attach_tokenizer(self, tokenizer)
        self.lmm_cfg = lmm_cfg if lmm_cfg is not None else LMMConfig(family="none", n_visual_tokens=0, image_token_id=-1)
        self.vision = vision
        self.connector = connector
        self.hook_vision_features = HookPoint()  # [batch, n_tokens, d_vision]
        self.hook_visual_tokens = HookPoint()  # [batch, n_visual, d_model]
        self._pending: tuple[Tensor, Tensor | None] | None = None
        self.embed.register_forward_hook(self._inject_visual_tokens)
        if hasattr(self, "ln_final"):
            # TransformerLens's `ln_final.hook_normalized` is read before the norm's gain and bias; the vectors the
            # unembedding reads (HF's last hidden state) get a hook of their own, named as TransformerBridge names it
            self.ln_final.hook_out = HookPoint()
            self.ln_final.register_forward_hook(lambda module, args, output: module.hook_out(output))
        self.setup()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_parts(cls, llm: HookedTransformer, vision: nn.Module, connector: nn.Module, lmm_cfg: LMMConfig,
                   tokenizer=None) -> HookedLMM:
        """Wrap an existing `HookedTransformer` (its cfg, tokenizer and weights, shared, not copied).

        `tokenizer` overrides `llm.tokenizer` (handy for an in-memory tokenizer: TransformerLens's
        `HookedTransformer(cfg, tokenizer)` tries to reload such a tokenizer by name and fails)."""
        tokenizer = tokenizer if tokenizer is not None else llm.tokenizer
        with torch.device("meta"):
            model = cls(copy.deepcopy(llm.cfg), tokenizer=tokenizer, lmm_cfg=lmm_cfg, move_to_device=False)
        # a HookedLMM passed as `llm` brings its own vision tower and connector: only its LLM weights are adopted
        state = {k: v for k, v in llm.state_dict().items()
                 if ".hook_" not in k and not k.startswith(("vision.", "connector."))}
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if unexpected:
            raise ValueError(f"from_parts: the LLM has weights HookedLMM does not expect: {unexpected[:5]}")
        still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if still_meta:
            raise ValueError(f"from_parts: the LLM's state dict lacks {still_meta[:5]}; pass a fully loaded HookedTransformer")
        device = next(llm.parameters()).device
        model.cfg.device = str(device)
        model.vision = vision.to(device)
        model.connector = connector.to(device)
        model.setup()
        model._check_parts()
        return model

    @classmethod
    def depalm(cls, llm, vision: str | nn.Module = "ViT-L-14", vision_weights: str | Path | None = None,
               connector: str | Path | nn.Module | None = None, n_visual_tokens: int = 10,
               connector_type: str = "pooling", dtype: torch.dtype = torch.float32,
               device: str | torch.device | None = None, **kwargs: Any) -> HookedLMM:
        """DePALM: open_clip vision tower -> resampler -> `n_visual_tokens` tokens before the prompt of an HF LLM
        (a local folder or a loaded HF model: OPT, GPT-2, Llama). See `lmm_concepts.models.depalm.build_depalm`."""
        from lmm_concepts.models.depalm import build_depalm

        return build_depalm(cls, llm, vision=vision, vision_weights=vision_weights, connector=connector,
                            n_visual_tokens=n_visual_tokens, connector_type=connector_type, dtype=dtype,
                            device=device, **kwargs)

    @classmethod
    def llava(cls, path_or_model, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
              **kwargs: Any) -> HookedLMM:
        """LLaVA-1.5 from a folder written by `LlavaForConditionalGeneration.save_pretrained` (or the model object)."""
        from lmm_concepts.models.llava import build_llava

        return build_llava(cls, path_or_model, dtype=dtype, device=device, **kwargs)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            "HookedLMM.from_pretrained would fetch a text-only model from the hub; build a multimodal model with "
            "HookedLMM.depalm(<local LLM folder>, ...), HookedLMM.llava(<local folder>) or HookedLMM.from_parts(...)"
        )

    @classmethod
    def toy(cls, *args: Any, **kwargs: Any):
        raise NotImplementedError("HookedLMM.toy() moved: load the toy with lmm_concepts.load_lmm('toy') (or "
                                  "lmm_concepts.load_toy()); it is built on HookedLMM, not part of it")

    def _check_parts(self) -> None:
        if self.vision is None or self.connector is None:
            raise ValueError("HookedLMM needs a vision encoder and a connector (use from_parts / depalm / llava)")
        if self.lmm_cfg.n_visual_tokens <= 0:
            raise ValueError(f"lmm_cfg.n_visual_tokens must be positive, got {self.lmm_cfg.n_visual_tokens}")
        d_out = getattr(self.connector, "d_model", None)
        if d_out is not None and d_out != self.cfg.d_model:
            raise ValueError(f"the connector outputs d_model={d_out} but the LLM has d_model={self.cfg.d_model}; "
                             "build the connector with the LLM's d_model")

    # ------------------------------------------------------------------ the LMM interface (models/interface.py)
    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    def identity(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "config": self.lmm_cfg.to_dict(),
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "weights_digest": weights_digest(self.named_parameters()),
        }

    def capture(self, inputs: ModelInputs, names: Sequence[str], fwd_hooks: Sequence[Hook] = ()) -> dict[str, Tensor]:
        """Activations at `names` only; blocks after the last one needed are never run."""
        names = list(names)
        unknown = [n for n in names if n not in self.hook_dict]
        if unknown:
            raise ValueError(f"the model has no hook points {unknown}; use {FINAL_HOOK!r}, "
                             f"'blocks.{{L}}.hook_resid_post' (L < {self.n_layers}) or another name in model.hook_dict")
        cache: dict[str, Tensor] = {}

        def keep(activation: Tensor, hook: HookPoint) -> None:
            cache[hook.name] = activation

        stop = stop_after(names, self.n_layers)
        with self.hooks(fwd_hooks=[*fwd_hooks, *((n, keep) for n in names)]):
            self(**inputs, return_type=None, **({"stop_at_layer": stop} if stop is not None else {}))
        missing = [n for n in names if n not in cache]
        if missing:
            raise ValueError(f"no activation reached the hooks {missing}: they are not on this forward's path")
        return cache

    @torch.no_grad()
    def encode_images_once(self, inputs: ModelInputs, batch_size: int = 64) -> ModelInputs:
        """`inputs` with `pixel_values` replaced by their visual tokens (`forward` takes `visual_tokens` instead):
        reruns skip the vision encoder and connector, whose hooks then no longer fire."""
        if set(inputs.images) != {"pixel_values"}:
            return inputs
        pixels = inputs.images["pixel_values"]
        visual = torch.cat([self.encode_images(pixels[i : i + batch_size].to(self.cfg.device)).to(pixels.device)
                            for i in range(0, len(pixels), batch_size)])
        return ModelInputs(inputs.input_ids, inputs.attention_mask, {"visual_tokens": visual})

    def logits(self, inputs: ModelInputs, fwd_hooks: Sequence[Hook] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        with self.hooks(fwd_hooks=list(fwd_hooks)):
            return self(**inputs)

    def final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """`ln_final` on vectors of any leading shape (it is written for [batch, pos, d_model])."""
        flat = x.reshape(-1, 1, x.shape[-1])
        return self.ln_final(flat).reshape(x.shape)

    def unembed_vectors(self, x: Float[Tensor, "... d_model"], use_bias: bool = False) -> Float[Tensor, "... d_vocab"]:
        logits = x.to(self.W_U.dtype) @ self.W_U
        return logits + self.b_U if use_bias else logits

    # ------------------------------------------------------------------ images
    def preprocess(self, images: Sequence[ImageLike] | ImageLike | Tensor) -> Float[Tensor, "batch 3 H W"]:
        """PIL images or file paths -> normalised pixels (the checkpoint's size, mean and std); tensors are checked."""
        if isinstance(images, Tensor):
            pixel_values = images[None] if images.ndim == 3 else images  # one image [3, H, W]
        else:
            if isinstance(images, (Image.Image, str, Path)):
                images = [images]
            pixel_values = ImagePreprocessor.from_config(self.lmm_cfg)(images)
        self._check_pixels(pixel_values)
        return pixel_values.to(self.cfg.device)

    def _check_pixels(self, pixel_values: Tensor) -> None:
        size = self.lmm_cfg.image_size
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be [batch, 3, H, W] (RGB), got shape {tuple(pixel_values.shape)}; "
                             "pass PIL images or paths to let preprocess() convert them")
        if tuple(pixel_values.shape[2:]) != (size, size):
            raise ValueError(f"images must be {size}x{size} for this vision encoder, got "
                             f"{tuple(pixel_values.shape[2:])}; resize them or pass PIL images / paths to preprocess()")

    def encode_images(self, pixel_values: Float[Tensor, "batch 3 H W"]) -> Float[Tensor, "batch n_visual d_model"]:
        """Vision encoder then connector, through `hook_vision_features` and `hook_visual_tokens`."""
        self._check_pixels(pixel_values)
        param = next(self.vision.parameters(), None)
        if param is not None:
            pixel_values = pixel_values.to(device=param.device, dtype=param.dtype)
        features = self.hook_vision_features(self.vision(pixel_values))
        param = next(self.connector.parameters(), None)
        if param is not None:
            features = features.to(device=param.device, dtype=param.dtype)
        visual = self.hook_visual_tokens(self.connector(features))
        expected = (pixel_values.shape[0], self.lmm_cfg.n_visual_tokens, self.cfg.d_model)
        if tuple(visual.shape) != expected:
            raise ValueError(f"the connector produced visual tokens of shape {tuple(visual.shape)}, expected {expected} "
                             "(batch, lmm_cfg.n_visual_tokens, d_model); fix n_visual_tokens or the connector")
        return visual

    # ------------------------------------------------------------------ prompts
    def _prompt_ids(self, prompt: str) -> list[int]:
        cfg, tok = self.lmm_cfg, self.tokenizer
        placeholders = [cfg.image_token_id] * cfg.n_visual_tokens
        if cfg.image_marker is None:
            return placeholders + tok(prompt)["input_ids"]
        n_markers = prompt.count(cfg.image_marker)
        if n_markers != 1:
            raise ValueError(f"the prompt must contain the image marker {cfg.image_marker!r} exactly once "
                             f"(one image per prompt), found {n_markers} in {prompt!r}")
        ids = tok(prompt)["input_ids"]
        marker_id = tok.convert_tokens_to_ids(cfg.image_marker)
        if marker_id == cfg.image_token_id and ids.count(marker_id) == 1:
            i = ids.index(marker_id)
            return ids[:i] + placeholders + ids[i + 1:]
        before, after = prompt.split(cfg.image_marker)
        return tok(before)["input_ids"] + placeholders + tok(after, add_special_tokens=False)["input_ids"]

    def build_inputs(self, images_or_pixel_values, prompt: str | list[str] | None = None,
                     max_new_tokens: int = 0) -> ModelInputs:
        """Pixels plus a left-padded batch of prompts holding one placeholder per visual token.

        A mapping of `input_ids`, `attention_mask` and `pixel_values`, ready for `forward(**inputs)` /
        `run_with_cache(**inputs)`, and the `ModelInputs` of `capture` / `logits`."""
        pixel_values = self.preprocess(images_or_pixel_values)
        batch = pixel_values.shape[0]
        if prompt is None:
            prompt = self.lmm_cfg.prompt
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch:
            raise ValueError(f"got {batch} images but {len(prompts)} prompts; give one prompt per image or a single string")
        rows = [self._prompt_ids(p) for p in prompts]
        length = max(len(r) for r in rows)
        if length + max_new_tokens > self.cfg.n_ctx:
            raise ValueError(f"prompt of {length} tokens (with {self.lmm_cfg.n_visual_tokens} visual tokens) plus "
                             f"{max_new_tokens} new tokens exceeds the context of {self.cfg.n_ctx}; shorten the prompt "
                             "or lower max_new_tokens")
        pad = self._pad_token_id()
        input_ids = torch.full((batch, length), pad, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, length - len(row):] = 1
        device = self.cfg.device
        return ModelInputs(input_ids.to(device), attention_mask.to(device), {"pixel_values": pixel_values})

    def _pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
            if candidate is not None:
                return int(candidate)
        return 0

    def to_str_tokens(self, input, *args, **kwargs):
        """As in TransformerLens; image placeholders (possibly outside the vocabulary) read as "<image>"."""
        strs = super().to_str_tokens(input, *args, **kwargs)
        if isinstance(input, Tensor) and input.ndim in (1, 2) and not (input.ndim == 2 and input.shape[0] > 1):
            ids = input.reshape(-1).tolist()
            marker = self.lmm_cfg.image_marker or "<image>"
            strs = [marker if i == self.lmm_cfg.image_token_id else s for i, s in zip(ids, strs, strict=True)]
        return strs

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids=None, pixel_values: Tensor | None = None, attention_mask: Tensor | None = None,
                return_type: str | None = "logits", *, visual_tokens: Tensor | None = None, input=None, **kwargs):
        """Logits `[batch, pos, d_vocab]` for exactly the sequence given; placeholders get the images' visual tokens.

        Pass `attention_mask` for left-padded batches (positions follow it, as in HF). `visual_tokens` skips the
        vision encoder (used by `generate`). Other keyword arguments go to `HookedTransformer.forward`."""
        if input_ids is None:
            input_ids = input
        if kwargs.get("start_at_layer") is not None:  # input is a residual stream: no tokens to embed
            return super().forward(input_ids, attention_mask=attention_mask, return_type=return_type, **kwargs)
        if isinstance(input_ids, (str, list)):
            input_ids = self.to_tokens(input_ids)
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        input_ids = input_ids.to(self.cfg.device)
        is_placeholder = input_ids == self.lmm_cfg.image_token_id
        if pixel_values is not None:
            visual_tokens = self.encode_images(pixel_values.to(self.cfg.device))
        n_placeholders = int(is_placeholder.sum())
        if visual_tokens is not None:
            if visual_tokens.shape[0] != input_ids.shape[0]:
                expected = visual_tokens.shape[0] * visual_tokens.shape[1]
                raise ValueError(
                    f"got {visual_tokens.shape[0]} images ({expected} visual tokens) but input_ids hold {n_placeholders} "
                    f"placeholders (id {self.lmm_cfg.image_token_id}) in {input_ids.shape[0]} rows; each row needs one "
                    f"image and {self.lmm_cfg.n_visual_tokens} placeholders: build the inputs with build_inputs() / "
                    "generate()")
            # placeholders past the prompt's were generated by the model: ordinary tokens, as in HF generate
            takes_image = image_positions(input_ids, self.lmm_cfg.image_token_id, visual_tokens.shape[1])
        elif n_placeholders and not _continues_cache(kwargs.get("past_kv_cache")):
            raise ValueError(f"input_ids hold {n_placeholders} image placeholders but no pixel_values were given; "
                             "pass pixel_values (one image per group of placeholders)")
        else:  # no placeholders, or a decoding step whose token is a placeholder the model generated
            takes_image = torch.zeros_like(is_placeholder)
        ordinary = is_placeholder & ~takes_image
        if ordinary.any() and not 0 <= self.lmm_cfg.image_token_id < self.cfg.d_vocab:
            raise ValueError(f"input_ids hold image placeholders (id {self.lmm_cfg.image_token_id}, outside the "
                             f"vocabulary of {self.cfg.d_vocab}) beyond the {self.lmm_cfg.n_visual_tokens} per row "
                             "that take the image; build the inputs with build_inputs() / generate()")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        n_image = int(takes_image.sum())
        safe_ids = input_ids.masked_fill(takes_image, self._pad_token_id()) if n_image else input_ids
        self._pending = (takes_image, visual_tokens) if n_image else None
        try:
            return super().forward(safe_ids, attention_mask=attention_mask, return_type=return_type, **kwargs)
        finally:
            self._pending = None

    def _inject_visual_tokens(self, module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        pending = self._pending
        if pending is None:
            return None
        is_placeholder, visual_tokens = pending
        if is_placeholder.shape != output.shape[:2]:
            return None
        output = output.clone()
        output[is_placeholder] = visual_tokens.reshape(-1, visual_tokens.shape[-1]).to(output.device, output.dtype)
        return output

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, images_or_pixel_values, prompt: str | list[str] | None = None, max_new_tokens: int = 20,
                 num_beams: int = 1, use_kv_cache: bool = True, eos_token_id: int | None = -1,
                 length_penalty: float = 1.0) -> GenerationOutput:
        """Caption a batch of images: batched greedy decoding (or beam search) with the KV cache.

        `eos_token_id=-1` means the tokenizer's EOS; `None` never stops early."""
        inputs = self.build_inputs(images_or_pixel_values, prompt, max_new_tokens=max_new_tokens)
        return self.generate_from_inputs(**inputs, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                         use_kv_cache=use_kv_cache, eos_token_id=eos_token_id,
                                         length_penalty=length_penalty)

    @torch.no_grad()
    def generate_from_inputs(self, input_ids: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"],
                             pixel_values: Tensor, max_new_tokens: int = 20, num_beams: int = 1,
                             use_kv_cache: bool = True, eos_token_id: int | None = -1,
                             length_penalty: float = 1.0) -> GenerationOutput:
        """`generate` from inputs already built (`build_inputs`), e.g. to reproduce an HF reference prompt."""
        if eos_token_id == -1:
            eos_token_id = getattr(self.tokenizer, "eos_token_id", None)
        if input_ids.shape[1] + max_new_tokens > self.cfg.n_ctx:
            raise ValueError(f"{input_ids.shape[1]} prompt tokens + {max_new_tokens} new tokens exceed the context of "
                             f"{self.cfg.n_ctx}; shorten the prompt or lower max_new_tokens")
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        pad = self._pad_token_id()
        input_ids, attention_mask = input_ids.to(self.cfg.device), attention_mask.to(self.cfg.device)
        visual = self.encode_images(pixel_values.to(self.cfg.device))
        if num_beams == 1:
            generated = greedy_decode(self, input_ids, attention_mask, visual, max_new_tokens, eos_token_id, pad,
                                      use_kv_cache=use_kv_cache)
        else:
            if not use_kv_cache:
                raise ValueError("beam search runs with the KV cache only; pass use_kv_cache=True")
            generated = beam_search(self, input_ids, attention_mask, visual, max_new_tokens, eos_token_id, pad,
                                    num_beams, length_penalty)
        return finish_output(self, input_ids, attention_mask, {"pixel_values": pixel_values}, generated,
                             eos_token_id, pad, max_new_tokens)

    # ------------------------------------------------------------------ connector IO
    def save_connector(self, path: str | Path) -> Path:
        """Write the connector as `<path>` (safetensors) and `<path>.json` beside it (LMMConfig + hyper-parameters)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        cfg = {"lmm": self.lmm_cfg.to_dict(), "connector": connector_config(self.connector)}
        write_safetensors(path, self.connector.state_dict(), metadata={"format": "pt"})
        write_json(path.with_suffix(".json"), cfg)
        return path

    def save_depalm(self, folder: str | Path, language_model: str | Path, vision: str | None = None,
                    vision_weights: str | Path | None = None) -> Path:
        """Write a DePALM folder that `lc.load_lmm(folder)` loads: the connector (`save_connector`) and a
        `config.json` naming the language model's folder and the vision tower (default: what this model was built
        with); see `models.depalm.read_depalm_folder`."""
        from lmm_concepts.models.depalm import CONNECTOR_FILE, write_depalm_config

        if self.lmm_cfg.family != "depalm":
            raise ValueError(f"save_depalm writes a DePALM model; this one is {self.lmm_cfg.family!r}")
        folder = Path(folder)
        recorded = self.lmm_cfg.vision or {}
        vision = vision if vision is not None else recorded.get("name")
        if vision_weights is None:
            vision_weights = recorded.get("weights")
        self.save_connector(folder / CONNECTOR_FILE)
        return write_depalm_config(folder, language_model, vision, vision_weights,
                                   bool(recorded.get("apply_ln_post", True)))

    def load_connector(self, path: str | Path) -> HookedLMM:
        """Replace the connector (and `lmm_cfg`) by one saved with `save_connector`."""
        connector, lmm_cfg = load_connector_file(path)
        d_out = getattr(connector, "d_model", None)
        if d_out is not None and d_out != self.cfg.d_model:
            raise ValueError(f"connector {path} outputs d_model={d_out} but this LLM has d_model={self.cfg.d_model}; "
                             "it was trained for another language model")
        param = next(self.embed.parameters())
        self.connector = connector.to(device=param.device, dtype=param.dtype)
        self.lmm_cfg = lmm_cfg
        self.setup()
        return self


def _continues_cache(cache: Any) -> bool:
    """Whether `cache` (a TransformerLens KV cache) already holds earlier positions: the call is a decoding step."""
    entries = getattr(cache, "entries", None)
    return bool(entries) and entries[0].past_keys.shape[1] > 0
