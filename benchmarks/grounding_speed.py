"""How long grounding, the lens and faithfulness take at a realistic width (random weights, CPU by default).

    PYTHONPATH=. python benchmarks/grounding_speed.py [--device cuda]

A 2-layer HookedTransformer with d_model=1024 and a 32k vocabulary (GPT-2's tokenizer is not needed: tokens are
decoded by a WordLevel tokenizer over English words), a store of 5,000 vectors, K=50 concepts. Prints seconds per
stage; `ground` is dominated by encoding the store, faithfulness by its (1 + n_random) forward passes per concept and
the unembedding of every scored position.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    import lmm_concepts as lc
    from lmm_concepts.grounding.words import english_words
    from tests._ground_fixtures import HandDictionary, MemoryStore, as_lmm, token_sequences

    words = sorted(english_words())[:32000]
    vocab = {w: i for i, w in enumerate(["<unk>", "<bos>", *words[:31998]])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", add_bos_token=True)
    tok.init_kwargs["name_or_path"] = "bench"
    cfg = HookedTransformerConfig(n_layers=2, d_model=1024, n_ctx=64, d_head=64, n_heads=16, d_vocab=len(vocab),
                                  act_fn="gelu", normalization_type="LN", device=args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg, tokenizer=tok).eval()
    torch.manual_seed(0)
    K, M = 50, 5000
    U = torch.nn.functional.normalize(torch.randn(K, 1024), dim=1)
    Z = torch.rand(M, K) @ U + 0.1 * torch.randn(M, 1024)
    store = MemoryStore({"blocks.0.hook_resid_post": Z})  # block 1 downstream: every faithfulness effect is measured
    dico = HandDictionary(U).to(args.device)

    t = time.perf_counter()
    expl = lc.ground(model, dico, store, n_words=15, n_images=5)
    print(f"ground: K={K}, M={M}, d=1024, vocab={len(vocab)}: {time.perf_counter() - t:.2f} s "
          f"(words of concept 0: {', '.join(expl[0].words[:5])} …)")
    t = time.perf_counter()
    lc.evaluate(expl, store, metrics=["overlap", "quality"])
    print(f"evaluate overlap + quality: {time.perf_counter() - t:.2f} s")
    tokens = torch.randint(2, len(vocab), (16, 16))
    t = time.perf_counter()
    res = lc.faithfulness(as_lmm(model), expl, token_sequences(tokens, torch.full((16,), 7)), concepts=list(range(4)),
                          n_random=4, codes=torch.full((16, K), 1.0))
    print(f"faithfulness, 4 concepts × 16 sequences of 16 tokens (token 7, 8 later positions) × (1 + 4 random): "
          f"{time.perf_counter() - t:.2f} s (indirect drop {res.mean_drop:.3f} vs random {res.mean_random_drop:.3f})")


if __name__ == "__main__":
    main()
