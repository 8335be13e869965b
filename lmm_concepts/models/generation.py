"""Batched decoding for `HookedLMM`: greedy (with or without the KV cache) and beam search.

TransformerLens's own `generate` never calls the embedding hook that injects the visual tokens, and its
positions are wrong for float-embedding input with the KV cache. Here every step goes through
`HookedLMM.forward` with token ids and an explicit attention mask, so left-padded rows get HF positions
(cumsum of the mask - 1) and the KV cache (`TransformerLensKeyValueCache`) extends the mask as it grows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from lmm_concepts.models.interface import GenerationOutput


def _new_cache(model: HookedTransformer, batch: int) -> TransformerLensKeyValueCache:
    return TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, batch)


def _reorder_cache(cache: TransformerLensKeyValueCache, index: Tensor) -> None:
    for entry in cache.entries:
        entry.past_keys = entry.past_keys[index.to(entry.past_keys.device)]
        entry.past_values = entry.past_values[index.to(entry.past_values.device)]
    cache.previous_attention_mask = cache.previous_attention_mask[index.to(cache.previous_attention_mask.device)]


@torch.no_grad()
def greedy_decode(
    model: HookedTransformer, input_ids: Tensor, attention_mask: Tensor, visual_tokens: Tensor,
    max_new_tokens: int, eos_token_id: int | None, pad_token_id: int, use_kv_cache: bool = True,
) -> Tensor:
    """Greedy decoding of a left-padded batch; returns generated ids `[batch, new]`, pad after EOS."""
    batch = input_ids.shape[0]
    device = input_ids.device
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    cache = _new_cache(model, batch) if use_kv_cache else None
    seq, mask = input_ids, attention_mask
    new_tokens: list[Tensor] = []
    for step in range(max_new_tokens):
        if cache is not None and step > 0:
            logits = model(new_tokens[-1][:, None], attention_mask=torch.ones_like(mask[:, :1]), past_kv_cache=cache)
        else:
            logits = model(seq, attention_mask=mask, visual_tokens=visual_tokens, past_kv_cache=cache)
        next_token = logits[:, -1].argmax(dim=-1).to(device)
        next_token = torch.where(finished, torch.full_like(next_token, pad_token_id), next_token)
        new_tokens.append(next_token)
        if cache is None:
            seq = torch.cat([seq, next_token[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if eos_token_id is not None:
            finished |= next_token == eos_token_id
            if bool(finished.all()):
                break
    return torch.stack(new_tokens, dim=1) if new_tokens else input_ids.new_zeros(batch, 0)


@torch.no_grad()
def beam_search(
    model: HookedTransformer, input_ids: Tensor, attention_mask: Tensor, visual_tokens: Tensor,
    max_new_tokens: int, eos_token_id: int | None, pad_token_id: int, num_beams: int,
    length_penalty: float = 1.0,
) -> Tensor:
    """Beam search with the KV cache. Ended beams stay in the beam with a frozen score; at the end the best
    beam per row is the one with the highest sum of log-probs / (generated length ** length_penalty)."""
    batch, k = input_ids.shape[0], num_beams
    device = input_ids.device
    ids = input_ids.repeat_interleave(k, dim=0)
    mask = attention_mask.repeat_interleave(k, dim=0)
    visual = visual_tokens.repeat_interleave(k, dim=0)
    cache = _new_cache(model, batch * k)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, device=device)
    history = ids.new_zeros(batch * k, 0)
    for step in range(max_new_tokens):
        if step == 0:
            logits = model(ids, attention_mask=mask, visual_tokens=visual, past_kv_cache=cache)
        else:
            logits = model(history[:, -1:], attention_mask=torch.ones_like(mask[:, :1]), past_kv_cache=cache)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1).to(device)  # [batch*k, d_vocab]
        vocab = logp.shape[-1]
        logp[finished] = float("-inf")
        logp[finished, pad_token_id] = 0.0
        candidates = (scores.reshape(-1, 1) + logp).reshape(batch, k * vocab)
        scores, flat = candidates.topk(k, dim=-1)
        source = (torch.arange(batch, device=device)[:, None] * k + flat // vocab).reshape(-1)
        token = (flat % vocab).reshape(-1)
        _reorder_cache(cache, source)
        was_finished = finished[source]
        history = torch.cat([history[source], token[:, None]], dim=1)
        lengths = lengths[source] + (~was_finished).float()
        finished = was_finished | (token == eos_token_id if eos_token_id is not None else torch.zeros_like(was_finished))
        if bool(finished.all()):
            break
    final = scores.reshape(-1) / lengths.clamp(min=1) ** length_penalty
    best = final.reshape(batch, k).argmax(dim=-1) + torch.arange(batch, device=device) * k
    return history[best]


def finish_output(model, input_ids: Tensor, attention_mask: Tensor, images: dict[str, Tensor],
                  generated: Tensor, eos_token_id: int | Sequence[int] | None, pad_token_id: int,
                  max_new_tokens: int) -> GenerationOutput:
    """Pad after EOS (and up to `max_new_tokens` when every row ended early), build the full sequence and its
    attention mask, decode the texts. `eos_token_id` may list several ids (chat models end a turn with their own)."""
    if generated.shape[1] < max_new_tokens:
        generated = torch.nn.functional.pad(generated, (0, max_new_tokens - generated.shape[1]), value=pad_token_id)
        if eos_token_id is None:
            raise RuntimeError("decoding stopped early without an EOS token")
    if eos_token_id is not None and generated.shape[1]:
        eos = torch.as_tensor(eos_token_id, device=generated.device).reshape(-1)
        is_eos = torch.isin(generated, eos).int()
        after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0  # strictly after the first EOS
    else:
        after_eos = torch.zeros_like(generated, dtype=torch.bool)
    generated = generated.masked_fill(after_eos, pad_token_id)
    gen_mask = (~after_eos).to(attention_mask.dtype)
    texts = [model.tokenizer.decode(row[~dead].tolist(), skip_special_tokens=True)
             for row, dead in zip(generated.cpu(), after_eos.cpu(), strict=True)] if model.tokenizer is not None else []
    return GenerationOutput(
        sequences=torch.cat([input_ids, generated], dim=1),
        attention_mask=torch.cat([attention_mask, gen_mask], dim=1),
        images=dict(images),
        prompt_length=input_ids.shape[1],
        generated_ids=generated,
        texts=texts,
    )
