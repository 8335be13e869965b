"""Concept activations along a caption: every concept's code at every token of a store sample's sequence.

A store keeps one vector per sample (at the word of interest). Here the sample's whole sequence is regenerated
(`lmm_concepts.metrics.sequences.store_sequences`: same prompt, same greedy decoding, checked against the stored
caption), the model is run once over it with the store's own hook captured (the hook name the store recorded,
e.g. `ln_final.hook_normalized` for stores written before `ln_final.hook_out` existed), and the dictionary's `encode`
is applied to the vector at every position:

    acts[t, k] = encode(Z)[t, k],  Z = activations at the store's hook, one row per token t of the sequence

Tokens are the visual placeholders (`kind` "visual"), the prompt ("prompt") and the generated caption ("generated"),
left padding excluded. `position` is the token whose vector the store holds; the vector captured there is checked
against the stored one (relative error ≤ `STORE_TOLERANCE`), so a wrong hook or model fails loudly instead of
colouring tokens with another layer's codes.

Lives beside the report (the top of the package), not in `grounding`, because it reruns the model through
`metrics.sequences`, a later stage than grounding.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.grounding.store_access import encode_all, manifest_get, meta_get, pick_layer
from lmm_concepts.metrics.sequences import store_sequences
from lmm_concepts.models.interface import ModelInputs

log = logging.getLogger(__name__)

KINDS = ("visual", "prompt", "generated")
STORE_TOLERANCE = 0.05
"""Largest relative difference ‖z_regenerated − z_stored‖ / ‖z_stored‖ accepted at the stored token: batches
padded differently and half-precision stores differ by ~1e-3; another hook or model by far more."""
IMAGE_TOKEN = "<image>"


@dataclass
class TokenSequence:
    """One regenerated sequence of a store sample, read at the store's hook."""

    sample_id: str
    tokens: list[str]
    """decoded tokens, one per position (visual placeholders read `IMAGE_TOKEN`)"""
    token_ids: list[int]
    kinds: list[str]
    """"visual", "prompt" or "generated", one per token"""
    position: int
    """index of the token whose vector the store holds"""
    hook_name: str
    caption: str
    """the generated caption, as the store recorded it"""

    @property
    def is_generated(self) -> Tensor:
        return torch.tensor([k == "generated" for k in self.kinds])

    @property
    def is_visual(self) -> Tensor:
        return torch.tensor([k == "visual" for k in self.kinds])


@dataclass
class CaptionTokens(TokenSequence):
    """A sequence with the vectors at the store's hook (before encoding)."""

    Z: Float[Tensor, "n_tokens d_model"] = field(repr=False)

    def encode(self, dictionary) -> CaptionActivations:
        """Every concept's activation at every token (the full dictionary, as for the store's rows)."""
        W_dec = dictionary.W_dec
        acts = encode_all(dictionary, self.Z.to(device=W_dec.device, dtype=W_dec.dtype))
        return CaptionActivations(self.sample_id, self.tokens, self.token_ids, self.kinds, self.position,
                                  self.hook_name, self.caption, acts)


@dataclass
class CaptionActivations(TokenSequence):
    """Every concept's activation along one sample's sequence."""

    acts: Float[Tensor, "n_tokens K"]

    def collapsed(self) -> CaptionActivations:
        """The same sequence with each run of visual tokens shown as one token "<image ×N>", whose activation per
        concept is the run's largest in magnitude (dashboards show text; hundreds of placeholders would drown it)."""
        tokens, ids, kinds, rows = [], [], [], []
        position = self.position
        t = 0
        while t < len(self.tokens):
            end = t + 1
            if self.kinds[t] == "visual":
                while end < len(self.tokens) and self.kinds[end] == "visual":
                    end += 1
            run = self.acts[t:end]
            if end - t > 1:
                tokens.append(f"{IMAGE_TOKEN[:-1]} ×{end - t}>")
                rows.append(run.gather(0, run.abs().argmax(0, keepdim=True))[0])
                if t <= self.position < end:
                    position = len(tokens) - 1
                elif self.position >= end:
                    position -= end - t - 1
            else:
                tokens.append(self.tokens[t])
                rows.append(run[0])
            ids.append(self.token_ids[t])
            kinds.append(self.kinds[t])
            t = end
        acts = torch.stack(rows) if rows else self.acts[:0]
        return CaptionActivations(self.sample_id, tokens, ids, kinds, position, self.hook_name, self.caption, acts)


@dataclass
class RegeneratedCaptions:
    captions: list[CaptionTokens]
    dropped: list[str] = field(default_factory=list)
    """sample ids whose regenerated caption differed from the stored one (left out)"""

    def encode(self, dictionary) -> list[CaptionActivations]:
        return [c.encode(dictionary) for c in self.captions]


def image_token_id(model) -> int | None:
    """The placeholder id of visual tokens, from the model's identity (its family config), or None if unknown."""
    config = (model.identity() or {}).get("config") or {}
    value = config.get("image_token_id") if isinstance(config, Mapping) else None
    return int(value) if value is not None else None


def _decode(tokenizer, token_id: int, image_id: int | None) -> str:
    if token_id == image_id:
        return IMAGE_TOKEN
    if token_id >= len(tokenizer):
        return f"<id {token_id}>"
    return tokenizer.decode([token_id])


@torch.no_grad()
def read_captions(model, store, ids: Sequence[str], *, layer: str | int | None = None,
                  batch_size: int = 8) -> RegeneratedCaptions:
    """Regenerate the sequences of `ids` (samples of `store`) with `model` and capture the store's hook at every
    token. `layer`: the store layer (default: the only one, or "final"); its hook name is the store's record."""
    hook = pick_layer(store, layer)
    if hook not in model.hook_dict:
        raise ValueError(
            f"the store's vectors were read at hook {hook!r}, which this model does not have: it is not the model "
            "that built the store, or that hook was renamed since (stores written before `ln_final.hook_out` "
            "existed record `ln_final.hook_normalized`); extract the store again with this model"
        )
    seqs = store_sequences(model, store, list(ids), batch_size=batch_size)
    inputs = ModelInputs.of(seqs.inputs)
    rule = manifest_get(store, "position", "predicts")
    row_of = {s: i for i, s in enumerate(store.sample_ids)}
    image_id = image_token_id(model)
    stored = store.layer(hook)
    out: list[CaptionTokens] = []
    for b in range(0, inputs.batch_size, batch_size):
        rows = list(range(b, min(b + batch_size, inputs.batch_size)))
        batch = inputs.select(rows)
        end = int(batch.attention_mask.nonzero()[:, 1].max()) + 1
        acts = model.capture(batch.truncate(end), [hook])[hook]
        for j, r in enumerate(rows):
            sid = seqs.sample_ids[r]
            meta_row = row_of[sid]
            real = batch.attention_mask[j, :end].bool()
            token_ids = batch.input_ids[j, :end][real].tolist()
            Z = acts[j][real.to(acts.device)].float().cpu()
            position = int(meta_get(store, meta_row, "position"))
            start = position + (1 if rule == "predicts" else 0) - int(meta_get(store, meta_row, "generated_index"))
            if not 0 <= start <= len(token_ids) or not 0 <= position < len(token_ids):
                raise ValueError(f"sample {sid!r}: the store's position {position} does not fit the regenerated "
                                 f"sequence of {len(token_ids)} tokens")
            _check_stored(Z[position], stored[meta_row], sid, hook)
            kinds = ["generated" if t >= start else ("visual" if i == image_id else "prompt")
                     for t, i in enumerate(token_ids)]
            out.append(CaptionTokens(
                sample_id=sid, tokens=[_decode(model.tokenizer, i, image_id) for i in token_ids], token_ids=token_ids,
                kinds=kinds, position=position, hook_name=hook, caption=str(meta_get(store, meta_row, "generated", "")),
                Z=Z,
            ))  # fmt: skip
    if seqs.dropped:
        log.warning("%d samples regenerated a caption other than the stored one and are left out: %s",
                    len(seqs.dropped), seqs.dropped[:5])
    return RegeneratedCaptions(out, list(seqs.dropped))


def _check_stored(z: Tensor, stored: Tensor, sample_id: str, hook: str) -> None:
    stored = stored.float()
    rel = float((z - stored).norm() / stored.norm().clamp_min(1e-12))
    if rel > STORE_TOLERANCE:
        raise ValueError(
            f"sample {sample_id!r}: the vector regenerated at hook {hook!r} differs from the stored one (relative "
            f"error {rel:.3g} > {STORE_TOLERANCE}): the model or hook is not the one that built the store"
        )


def caption_activations(model, dictionary, store, ids: Sequence[str], *, layer: str | int | None = None,
                        batch_size: int = 8) -> list[CaptionActivations]:
    """Every concept's activation at every token of the samples `ids` of `store`: `acts` [n_tokens, K] with the
    token strings, `is_generated` / `is_visual` masks and the stored token's `position` (see the module docstring).
    Samples whose regenerated caption differs from the stored one are left out (with a warning)."""
    return read_captions(model, store, ids, layer=layer, batch_size=batch_size).encode(dictionary)
