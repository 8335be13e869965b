"""`ground`: every concept of a dictionary in words (logit lens) and images (most activating samples, MAS).
(`explain`, the strongest concepts of one sample, is in `explanations.py` beside the `Explanations` it reads.)

Default lens: "raw" for vectors read after the final norm (store layer "final" = `ln_final.hook_out`, where W_U·u is
exactly the logits' direction, as in the reference code), "ln_final" for any other layer (a residual-stream vector
reaches the logits only through the final norm). Stores made when "final" was `ln_final.hook_normalized` (before the
norm's gain and bias) keep "raw" there, the reference code's lens, which is then not exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lmm_concepts.errors import InputError
from lmm_concepts.grounding.explanations import (  # noqa: F401  (explain and its result live there)
    ConceptExplanation,
    Explanations,
    SampleExplanation,
    explain,
    top_concepts,
)
from lmm_concepts.grounding.store_access import (
    as_store,
    check_store_model,
    encode_all,
    manifest_get,
    meta_get,
    pick_layer,
    store_matrix,
    stored_hook,
)
from lmm_concepts.grounding.words import LENSES, WordFilter, lens_logits, top_words
from lmm_concepts.models.layers import is_after_final_norm


def default_lens(hook_name: str) -> str:
    return "raw" if is_after_final_norm(hook_name) else "ln_final"


def check_dictionary(model, dictionary) -> Tensor:
    W_dec = getattr(dictionary, "W_dec", None)
    if W_dec is None:
        raise RuntimeError(f"{type(dictionary).__name__} is not fitted: call .fit(Z) before grounding it")
    d_model = model.d_model
    if W_dec.shape[1] != d_model:
        raise InputError(
            f"the dictionary's concept vectors have d={W_dec.shape[1]} but the model's d_model is {d_model}: it was "
            "fitted on another model; fit it on representations extracted from this model"
        )
    return W_dec.detach()


def fitted_hook(dictionary) -> str | None:
    """The hook a dictionary loaded from disk records it was fitted on (its cfg.json's `hook_name`), if any."""
    hook = getattr(dictionary, "hook_name_", None)
    if hook is None:  # a wrapped sae-lens SAE keeps it in its own config
        cfg = getattr(getattr(dictionary, "sae", None), "cfg", None)
        hook = getattr(getattr(cfg, "metadata", None), "hook_name", None)
    return hook if isinstance(hook, str) and hook else None


def check_dictionary_layer(dictionary, hook: str, allow_mismatch: bool) -> str | None:
    """Refuse a dictionary recorded as fitted on another hook than `hook`; with `allow_mismatch`, the note that
    says so instead (kept with the results)."""
    fitted = fitted_hook(dictionary)
    if fitted is None or fitted == hook:
        return None
    if not allow_mismatch:
        raise InputError(
            f"the dictionary was fitted on {fitted} (the hook_name in its cfg.json) but the representations asked "
            f"for are at {hook}: choose the layer it was fitted on (layer=... / --layer), or pass "
            "allow_layer_mismatch=True (--allow_layer_mismatch) to use it there anyway"
        )
    return f"the dictionary was fitted on {fitted} but is applied at {hook} (allow_layer_mismatch)"


def ground(
    model,
    dictionary,
    store,
    n_words: int = 15,
    n_images: int = 5,
    lens: str | None = None,
    *,
    layer: str | int | None = None,
    use_bias: bool = False,
    n_candidates: int = 50,
    word_filter: WordFilter | None = None,
    seed: int = 0,
    allow_layer_mismatch: bool = False,
) -> Explanations:
    """Ground each concept u_k (row of `dictionary.W_dec`) in words and in its most activating samples.

    Args:
        model: any `LMM` (its unembedding, final norm and tokenizer are read).
        dictionary: a fitted ConceptDictionary whose d equals the model's d_model.
        store: the RepresentationStore the dictionary was fitted on (MAS and activation statistics come from it).
        n_words: words per concept, taken from the top `n_candidates` lens tokens; never padded.
        n_images: most activating samples per concept.
        lens: "raw" or "ln_final"; None follows `layer` (see the module docstring).
        layer: the store layer the dictionary was fitted on (default: the hook the dictionary records, else the
            only one, else "final"). A dictionary recorded as fitted on another hook is refused.
        use_bias: add the unembedding bias b_U to the lens logits.
        seed: seed of the random directions whose words are the random-words baseline.
        allow_layer_mismatch: ground a dictionary at a layer other than the one it records; said in `notes`.
    """
    store = as_store(store)
    check_store_model(model, store)
    fitted = fitted_hook(dictionary)
    if layer is None and fitted is not None and fitted in [str(x) for x in store.layers]:
        layer = fitted
    layer = pick_layer(store, layer)
    hook_name = stored_hook(layer)
    mismatch = check_dictionary_layer(dictionary, hook_name, allow_layer_mismatch)
    lens = lens or default_lens(hook_name)
    if lens not in LENSES:
        raise InputError(f"lens must be one of {LENSES}, got {lens!r}")
    if n_images < 0:
        raise InputError(f"n_images must be ≥ 0, got {n_images}")
    W_dec = check_dictionary(model, dictionary)
    Z = store_matrix(store, layer)
    V = encode_all(dictionary, Z)

    logits = lens_logits(model, W_dec, lens=lens, use_bias=use_bias)
    n_top = min(n_images, V.shape[0])
    top_act, top_idx = V.topk(n_top, dim=0) if n_top else (V[:0], V[:0].long())
    sample_ids = list(store.sample_ids)
    concepts, notes = [], [mismatch] if mismatch else []
    for k in range(W_dec.shape[0]):
        g = top_words(logits[k], model.tokenizer, n_words=n_words, n_candidates=n_candidates, word_filter=word_filter)
        rows = top_idx[:, k].tolist()
        v = V[:, k]
        concepts.append(
            ConceptExplanation(
                index=k,
                words=g.words,
                word_scores=g.scores,
                word_token_ids=g.token_ids,
                candidates=g.candidates,
                short=len(g.words) < n_words,
                top_sample_ids=[sample_ids[i] for i in rows],
                top_activations=top_act[:, k].tolist(),
                top_image_paths=[meta_get(store, i, "image_path") for i in rows],
                stats={
                    "mean": v.mean().item(),
                    "std": v.std(unbiased=False).item(),
                    "max": v.max().item(),
                    "frac_active": (v > 0).float().mean().item(),
                    "n_samples": float(len(v)),
                },
            )
        )
        if len(g.words) < n_words:
            notes.append(
                f"concept {k}: only {len(g.words)} of the top {n_candidates} tokens pass the word filter "
                f"(asked for {n_words}); the list is not padded"
            )
    gen = torch.Generator().manual_seed(seed)
    R = torch.randn(W_dec.shape, generator=gen)
    R = torch.nn.functional.normalize(R, dim=1) * W_dec.float().norm(dim=1, keepdim=True).cpu()
    rand_logits = lens_logits(model, R, lens=lens, use_bias=use_bias)
    random_words = [
        top_words(row, model.tokenizer, n_words=n_words, n_candidates=n_candidates, word_filter=word_filter).words
        for row in rand_logits
    ]
    return Explanations(
        random_words=random_words,
        concepts=concepts,
        W_dec=W_dec.cpu(),
        layer=layer,
        hook_name=hook_name,
        lens=lens,
        use_bias=use_bias,
        n_words=n_words,
        n_images=n_images,
        n_candidates=n_candidates,
        signed_codes=bool(getattr(dictionary, "signed_codes", False)),
        model=_name(manifest_get(store, "model")),
        store=str(getattr(store, "path", "")) or None,
        notes=notes,
        dictionary=dictionary,
    )


def _name(x: Any) -> str | None:
    if x is None:
        return None
    return x if isinstance(x, str) else str(x)
