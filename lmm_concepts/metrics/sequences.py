"""The model inputs behind a RepresentationStore's rows, for measures that rerun the model (faithfulness).

A store keeps vectors, not sequences. Its manifest records how they were made (prompt, caption length, greedy
decoding), so the sequences are regenerated batch by batch; a sample whose regenerated caption differs from the
stored one is dropped (and counted), so every kept row is the exact sequence its vector was read from. Batches are
right-padded to one length (attention mask 0): causal attention keeps earlier positions unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lmm_concepts.grounding.store_access import manifest_get, meta_get


@dataclass
class StoreSequences:
    inputs: dict[str, Tensor]
    """`run_with_hooks` keyword arguments: input_ids, pixel_values, attention_mask [n, ...]"""
    positions: Tensor
    """[n] index of each row's token in its padded sequence"""
    sample_ids: list
    dropped: list = field(default_factory=list)
    """sample ids whose regenerated caption differed from the stored one"""


@torch.no_grad()
def store_sequences(model, store, ids: list | None = None, batch_size: int = 8) -> StoreSequences:
    """Regenerate the sequences of `store`'s samples (all, or `ids`) with `model` (a HookedLMM)."""
    from lmm_concepts.extraction.positions import left_padding

    all_ids = list(store.sample_ids)
    ids = all_ids if ids is None else list(ids)
    if not ids:
        raise ValueError("the store holds no sample: nothing to rerun")
    index = {s: i for i, s in enumerate(all_ids)}
    missing = [s for s in ids if s not in index]
    if missing:
        raise KeyError(f"sample ids {missing[:5]} are not in the store ({len(all_ids)} samples)")
    rows = {s: index[s] for s in ids}
    prompt = manifest_get(store, "prompt")
    max_new = manifest_get(store, "max_new_tokens", 20)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    seqs, masks, pixels, positions, kept, dropped = [], [], [], [], [], []
    for b in range(0, len(ids), batch_size):
        chunk = ids[b : b + batch_size]
        gen = model.generate(store.images(chunk), prompt=prompt, max_new_tokens=max_new)
        n_pad = left_padding(gen.attention_mask, gen.prompt_length).tolist()
        for r, s in enumerate(chunk):
            row = rows[s]
            if gen.texts[r].strip() != str(meta_get(store, row, "generated", "")).strip():
                dropped.append(s)
                continue
            seqs.append(gen.sequences[r].cpu())
            masks.append(gen.attention_mask[r].cpu())
            pixels.append(gen.pixel_values[r].cpu())
            positions.append(int(meta_get(store, row, "position")) + n_pad[r])
            kept.append(s)
    if not kept:
        raise ValueError(
            f"none of the {len(ids)} regenerated captions matches the store's: the model differs from the one "
            "that built the store"
        )
    length = max(len(x) for x in seqs)
    input_ids = torch.full((len(seqs), length), pad, dtype=seqs[0].dtype)
    attention = torch.zeros((len(seqs), length), dtype=masks[0].dtype)
    for i, (x, m) in enumerate(zip(seqs, masks, strict=True)):
        input_ids[i, : len(x)] = x
        attention[i, : len(m)] = m
    device = model.cfg.device
    inputs = {
        "input_ids": input_ids.to(device),
        "pixel_values": torch.stack(pixels).to(device),
        "attention_mask": attention.to(device),
    }
    return StoreSequences(inputs, torch.tensor(positions), kept, dropped)
