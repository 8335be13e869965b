"""A 2-layer transformer wired by hand, so that faithfulness has known answers.

Every token's embedding holds a large fixed "anchor" (never read), which keeps each LayerNorm's scale nearly constant;
the token of interest T also holds 3·u for each concept direction u below. Block 0 is empty (its output is the
embedding). Block 1 and the unembedding read these directions, all zero-mean and orthogonal:

    u_mlp     read by block 1's MLP at the same position, which writes the word "dog": the only route to "dog"
    u_attn    read by block 1's attention (uniform over earlier positions) which writes "beach" at every later
              position (and at T itself)
    u_dom     read by block 1's MLP, which writes "pizza" so strongly that "pizza" is the near-certain next token
    u_unused  read by nothing

The unembedding reads dims 0–5 only, so no concept direction reaches the logits directly.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from tests._ground_fixtures import VOCAB, as_lmm, tiny_tokenizer, token_sequences

D = 16
TOK = {w: i for i, w in enumerate(VOCAB)}
T = TOK["lamp"]  # the token of interest


def _pair(a: int, b: int) -> Tensor:
    v = torch.zeros(D)
    v[a], v[b] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    return v


A_DOG, A_BEACH, A_PIZZA, ANCHOR = _pair(0, 1), _pair(2, 3), _pair(4, 5), _pair(6, 7)
U_MLP, U_UNUSED, U_ATTN, U_DOM = _pair(8, 9), _pair(10, 11), _pair(12, 13), _pair(14, 15)
CONCEPTS = torch.stack([U_MLP, U_UNUSED, U_ATTN, U_DOM])  # W_dec rows: 0 mlp, 1 unused, 2 attn, 3 dom
MLP, UNUSED, ATTN, DOM = range(4)


def wired_model():
    """The hand-wired model as an `LMM` (see the module docstring)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=D, n_ctx=16, d_head=4, n_heads=4, d_mlp=8, d_vocab=len(VOCAB),
                                  act_fn="relu", normalization_type="LN", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llm = HookedTransformer(cfg, tokenizer=tiny_tokenizer())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in llm.named_parameters():
            if not name.endswith(("ln1.w", "ln2.w", "ln_final.w")):
                p.zero_()
        llm.W_E[:, :6] = 0.5 * torch.randn(len(VOCAB), 6, generator=g)
        llm.W_E.add_(100 * ANCHOR)
        llm.W_E[T] += 3 * CONCEPTS.sum(0)
        b = llm.blocks[1]
        # attention: W_Q = W_K = 0 gives uniform causal attention; head 0 copies u_attn into "beach"
        b.attn.W_V[0, :, 0] = U_ATTN
        b.attn.W_O[0, 0, :] = 60 * A_BEACH
        # MLP: neuron 0 reads u_mlp and writes "dog"; neuron 1 reads u_dom and writes "pizza"
        b.mlp.W_in[:, 0], b.mlp.W_out[0] = 25 * U_MLP, 2 * A_DOG
        b.mlp.W_in[:, 1], b.mlp.W_out[1] = 25 * U_DOM, 6 * A_PIZZA
        llm.W_U[:6] = 0.3 * torch.randn(6, len(VOCAB), generator=g)
        for word, a in (("dog", A_DOG), ("beach", A_BEACH), ("pizza", A_PIZZA)):
            llm.W_U[:, TOK[word]] = 12 * a
    return as_lmm(llm)


def wired_sequences(n: int = 8, length: int = 8, seed: int = 0):
    """n token rows of filler with T at position 2 (the token of interest), `length` tokens each."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(TOK["the"], TOK["lamp"], (n, length), generator=g)
    tokens[:, 0] = TOK["<bos>"]
    tokens[:, 2] = T
    return token_sequences(tokens, torch.full((n,), 2))


def words(*names: str) -> list[list[int]]:
    return [[TOK[w]] for w in names]
