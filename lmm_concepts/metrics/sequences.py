"""The model inputs behind a RepresentationStore's rows, for measures that rerun the model (faithfulness).

A store keeps vectors, not sequences. Its manifest records how they were made (prompt, caption length, greedy
decoding), so the sequences are regenerated batch by batch with `LMM.generate`; a sample whose regenerated caption
differs from the stored one is dropped (and counted), so every kept row is the exact sequence its vector was read
from. Batches are joined with `ModelInputs.concat` (right padding, attention mask 0 there): each row keeps its own
left padding, and causal attention leaves every real position unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Int
from torch import Tensor

from lmm_concepts.grounding.store_access import manifest_get, meta_get
from lmm_concepts.models.interface import LMM, ModelInputs


@dataclass
class StoreSequences:
    """The full sequences (prompt, image placeholders, generated caption) behind a store's rows."""

    inputs: ModelInputs
    """one row per kept sample (on the CPU; select rows and move them with `.select(...).to(device)`)"""
    positions: Int[Tensor, " n"]
    """index of each row's token (the store's position) in its padded sequence"""
    sample_ids: list
    dropped: list = field(default_factory=list)
    """sample ids whose regenerated caption differed from the stored one"""

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def ends(self) -> Int[Tensor, " n"]:
        """Index of each row's last real token (the caption's last generated token, EOS included)."""
        mask = self.inputs.attention_mask.to(torch.long).cpu()
        length = mask.shape[1]
        return length - 1 - mask.flip(1).argmax(dim=1)


def pad_id(model: LMM) -> int:
    """The id written after a short row: the tokenizer's pad token, else its EOS, else 0."""
    tok = model.tokenizer
    for candidate in (getattr(tok, "pad_token_id", None), getattr(tok, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.no_grad()
def store_sequences(model: LMM, store, ids: list | None = None, batch_size: int = 8) -> StoreSequences:
    """Regenerate the sequences of `store`'s samples (all, or `ids`) with `model` (any `LMM`)."""
    from lmm_concepts.extraction.positions import left_padding

    all_ids = list(store.sample_ids)
    ids = all_ids if ids is None else list(ids)
    if not ids:
        raise ValueError("the store holds no sample: nothing to rerun")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    index = {s: i for i, s in enumerate(all_ids)}
    missing = [s for s in ids if s not in index]
    if missing:
        raise KeyError(f"sample ids {missing[:5]} are not in the store ({len(all_ids)} samples)")
    prompt = manifest_get(store, "prompt")
    max_new = manifest_get(store, "max_new_tokens", 20)
    parts: list[ModelInputs] = []
    positions, kept, dropped = [], [], []
    for b in range(0, len(ids), batch_size):
        chunk = ids[b : b + batch_size]
        gen = model.generate(store.images(chunk), prompt=prompt, max_new_tokens=max_new)
        n_pad = left_padding(gen.attention_mask, gen.prompt_length).tolist()
        rows = []
        for r, s in enumerate(chunk):
            row = index[s]
            if gen.texts[r].strip() != str(meta_get(store, row, "generated", "")).strip():
                dropped.append(s)
                continue
            rows.append(r)
            positions.append(int(meta_get(store, row, "position")) + n_pad[r])
            kept.append(s)
        if rows:
            parts.append(gen.inputs().select(rows).to("cpu"))
    if not kept:
        raise ValueError(
            f"none of the {len(ids)} regenerated captions matches the store's: the model differs from the one "
            "that built the store"
        )
    return StoreSequences(ModelInputs.concat(parts, pad_id(model)), torch.tensor(positions), kept, dropped)
