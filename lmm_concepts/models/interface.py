"""What the pipeline needs from a multimodal model: the `LMM` protocol and the batches it runs on.

Extraction, grounding, metrics, steering, sequence regeneration, the demo and the CLI use a model only through
the members of `LMM`. Two backends implement it:

- `HookedLMM` (`models/hooked_lmm.py`): DePALM, the toy and LLaVA-1.5, their language model converted onto a
  TransformerLens `HookedTransformer` (a sae-lens `HookedSAETransformer`);
- the TransformerBridge backend (`models/bridge/`): any family TransformerLens's `TransformerBridge` adapts, the
  Hugging Face model kept as it is.

No pipeline module checks which one it holds.

Hook names are TransformerLens's in both backends: `resid_hook(L)` = `blocks.{L}.hook_resid_post`, the residual
stream after block L, and `FINAL_HOOK` = `ln_final.hook_out`, the output of the final norm (what a store calls
layer "final"). Images reach a model as a `ModelInputs` batch: left-padded token ids with one placeholder
per visual token, their attention mask, and the family's image tensors, every one of them indexed by sample on
dim 0 so that rows can be selected, cut and concatenated without knowing the family.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

FINAL_HOOK = "ln_final.hook_out"
"""The output of the language model's final norm, gain and bias included: the vectors the unembedding reads, HF's
last hidden state (store layer "final"). TransformerLens's `ln_final.hook_normalized` is read before the gain."""

LEGACY_FINAL_HOOK = "ln_final.hook_normalized"
"""TransformerLens's normalised vectors before the final norm's gain and bias: what stores and dictionaries recorded
as layer "final" before it meant `FINAL_HOOK`. Read by this name only: they are other vectors than `FINAL_HOOK`'s."""


def resid_hook(layer: int) -> str:
    """The residual stream after block `layer` (a non-negative index)."""
    return f"blocks.{layer}.hook_resid_post"


Hook = tuple[str, Callable[..., Any]]
"""A TransformerLens forward hook: (hook name, fn(activation, hook) -> activation or None)."""


@dataclass(eq=False)
class ModelInputs(Mapping[str, Tensor]):
    """A batch ready for a forward pass; also a mapping (`input_ids`, `attention_mask`, then the image tensors), so
    `model(**inputs)` and `inputs["attention_mask"]` work.

    `images` holds the family's image tensors (`pixel_values` [batch, 3, H, W] for DePALM and LLaVA-1.5; tiles and
    `image_sizes` for LLaVA-NeXT, ...), each with the sample on dim 0. Zero entries added when samples are padded
    to a common shape (`concat`) must be ignored by the family's forward (its sizes / grids say what is real)."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    images: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, inputs: ModelInputs | Mapping[str, Tensor]) -> ModelInputs:
        """`inputs` itself, or a batch from a mapping of `input_ids`, optionally `attention_mask` (default: every
        token real) and the image tensors."""
        if isinstance(inputs, ModelInputs):
            return inputs
        if "input_ids" not in inputs:
            raise ValueError(f"a model's inputs need input_ids (model.build_inputs(images) makes them), got keys "
                             f"{sorted(inputs)}")
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        images = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        return cls(ids, mask if mask is not None else torch.ones_like(ids), images)

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, key: str) -> Tensor:
        if key == "input_ids":
            return self.input_ids
        if key == "attention_mask":
            return self.attention_mask
        return self.images[key]

    def __iter__(self) -> Iterator[str]:
        return iter(["input_ids", "attention_mask", *self.images])

    def __len__(self) -> int:
        return 2 + len(self.images)

    @property
    def pixel_values(self) -> Tensor | None:
        return self.images.get("pixel_values")

    def select(self, rows: Sequence[int] | Tensor) -> ModelInputs:
        """The rows `rows` (sample indices), in that order."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return ModelInputs(
            self.input_ids[idx.to(self.input_ids.device)],
            self.attention_mask[idx.to(self.attention_mask.device)],
            {k: v[idx.to(v.device)] for k, v in self.images.items()},
        )

    def truncate(self, end: int) -> ModelInputs:
        """Positions [0, end): in a causal model the activations there do not depend on later tokens."""
        return ModelInputs(self.input_ids[:, :end], self.attention_mask[:, :end], dict(self.images))

    def to(self, device: str | torch.device) -> ModelInputs:
        return ModelInputs(self.input_ids.to(device), self.attention_mask.to(device),
                           {k: v.to(device) for k, v in self.images.items()})

    @classmethod
    def concat(cls, parts: Sequence[ModelInputs], pad_token_id: int) -> ModelInputs:
        """Stack batches: token ids right-padded to the longest (attention mask 0 there; each row keeps its own
        left padding), image tensors zero-padded on every non-batch dim to the largest."""
        if not parts:
            raise ValueError("ModelInputs.concat needs at least one batch")
        length = max(p.input_ids.shape[1] for p in parts)
        ids = torch.cat([nn.functional.pad(p.input_ids, (0, length - p.input_ids.shape[1]), value=pad_token_id)
                         for p in parts])
        mask = torch.cat([nn.functional.pad(p.attention_mask, (0, length - p.attention_mask.shape[1]))
                          for p in parts])
        keys = list(parts[0].images)
        if any(list(p.images) != keys for p in parts):
            raise ValueError(f"ModelInputs.concat: batches hold different image tensors: {[list(p.images) for p in parts]}")
        images = {k: _cat_padded([p.images[k] for p in parts]) for k in keys}
        return cls(ids, mask, images)


def _cat_padded(tensors: Sequence[Tensor]) -> Tensor:
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].ndim)]
    padded = []
    for t in tensors:
        pad: list[int] = []
        for d in reversed(range(1, t.ndim)):
            pad += [0, shape[d - 1] - t.shape[d]]
        padded.append(nn.functional.pad(t, pad) if any(pad) else t)
    return torch.cat(padded)


@dataclass
class GenerationOutput:
    """What `LMM.generate` returns. `inputs()` feeds the whole sequences straight back to `LMM.capture` /
    `LMM.logits` to read the residual stream at any generated token."""

    sequences: Int[Tensor, "batch seq"]
    """Full left-padded sequence: prompt (with placeholders) then the generated tokens (pad after EOS)."""
    attention_mask: Int[Tensor, "batch seq"]
    """1 on real tokens (generated tokens and the EOS included); 0 on left padding and after EOS."""
    images: dict[str, Tensor]
    """The family's image tensors the captions were generated from (see `ModelInputs.images`)."""
    prompt_length: int
    """Index in `sequences` where the generated tokens start (the same for every row thanks to left padding)."""
    generated_ids: Int[Tensor, "batch new"]
    """Generated tokens only, `new` = max_new_tokens columns (pad after EOS; decoding stops once every row ended)."""
    texts: list[str]
    """Decoded generated text, special tokens skipped."""

    @property
    def pixel_values(self) -> Tensor | None:
        return self.images.get("pixel_values")

    def inputs(self) -> ModelInputs:
        """The generated sequences as a batch for a forward pass."""
        return ModelInputs(self.sequences, self.attention_mask, dict(self.images))


@runtime_checkable
class LMM(Protocol):
    """A captioning multimodal model seen through TransformerLens hook names (see the module docstring)."""

    tokenizer: Any
    """A Hugging Face tokenizer: decodes captions and spells the word of interest."""

    @property
    def n_layers(self) -> int:
        """Blocks of the language model."""
        ...

    @property
    def d_model(self) -> int:
        """Width of the language model's residual stream."""
        ...

    @property
    def device(self) -> torch.device:
        """Where inputs go (the language model's embedding)."""
        ...

    @property
    def hook_dict(self) -> dict[str, Any]:
        """Every hook point by name (`resid_hook(L)` and `FINAL_HOOK` among them)."""
        ...

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        """The unembedding as the checkpoint has it (no folding or centring)."""
        ...

    @property
    def b_U(self) -> Float[Tensor, " d_vocab"]:
        """The unembedding's bias (zeros when the family has none)."""
        ...

    @property
    def training(self) -> bool: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def identity(self) -> dict[str, Any]:
        """What a store's manifest records to recognise the model: class, family config, dimensions, weights digest."""
        ...

    def build_inputs(self, images: Any, prompt: str | list[str] | None = None, max_new_tokens: int = 0) -> ModelInputs:
        """PIL images or paths (one per sample) and a prompt (None: the family's captioning prompt, in its own chat
        template) -> a left-padded batch, checked to leave room for `max_new_tokens`."""
        ...

    def generate(self, images: Any, prompt: str | list[str] | None = None, max_new_tokens: int = 20,
                 num_beams: int = 1) -> GenerationOutput:
        """Batched captioning: greedy (`num_beams=1`) or beam search, left padding, KV cache. Forward hooks added
        with `hooks()` act at every step (steering)."""
        ...

    def capture(self, inputs: ModelInputs, names: Sequence[str], fwd_hooks: Sequence[Hook] = ()) -> dict[str, Tensor]:
        """Activations `[batch, pos, ...]` at the hooks `names` only, with `fwd_hooks` active; the forward pass
        stops after the last block it needs."""
        ...

    def logits(self, inputs: ModelInputs, fwd_hooks: Sequence[Hook] = ()) -> Float[Tensor, "batch pos d_vocab"]:
        """The model's output logits (the family's soft-capping included), with `fwd_hooks` active."""
        ...

    def hooks(self, fwd_hooks: Sequence[Hook] = (), bwd_hooks: Sequence[Hook] = (),
              reset_hooks_end: bool = True, clear_contexts: bool = False) -> AbstractContextManager[Any]:
        """TransformerLens's context manager: the hooks act on every forward (and `generate` step) inside it."""
        ...

    def encode_images_once(self, inputs: ModelInputs) -> ModelInputs:
        """The same batch with its images already encoded, for many reruns on the same images (ablations): logits
        and captures from it equal those from `inputs`, but vision hooks no longer fire. A backend that cannot
        reuse its encoding returns `inputs` as they are."""
        ...

    def final_norm(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """The language model's final norm applied to residual vectors (for the logit lens at inner layers)."""
        ...

    def unembed_vectors(self, x: Float[Tensor, "... d_model"], use_bias: bool = False) -> Float[Tensor, "... d_vocab"]:
        """Logits of vectors read after the final norm: `x @ W_U` (+ `b_U`), then the family's final-logit
        soft-capping if it has one (monotone, so the lens's top tokens do not change)."""
        ...


def weights_digest(named_parameters: Iterator[tuple[str, Tensor]]) -> str:
    """A digest of a model's weights from ~1024 evenly spaced values of every parameter: exact (no reductions), so
    the same weights give the same digest on any device, and cheap even for a 7B model."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(named_parameters, key=lambda item: item[0]):
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            if p.is_meta:
                continue
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 1024)][:1024]  # exact values spread over the whole tensor
            h.update(sample.to("cpu", torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def stop_after(names: Sequence[str], n_layers: int) -> int | None:
    """The number of blocks a forward must run to reach every hook in `names` (None: the whole model).

    Only hooks inside `blocks.{L}.` allow stopping early; any other hook (the final norm, the unembedding) needs
    every block."""
    last = -1
    for name in names:
        head, _, rest = name.partition(".")
        index, _, _ = rest.partition(".")
        if head != "blocks" or not index.isdigit():
            return None
        last = max(last, int(index))
    return None if last < 0 or last + 1 >= n_layers else last + 1
