"""The toy model's word-level tokenizer: one token per word of the synthetic world (not a 49k BPE).

Built in memory with `tokenizers` (WordLevel, lower-casing, whitespace + punctuation split) and wrapped in
`transformers.PreTrainedTokenizerFast`, so TransformerLens and the rest of the library use it like any HF tokenizer.
Ids are fixed: ``[PAD]=0, [BOS]=1, [EOS]=2, [UNK]=3, <image>=4``, then the world's words in sorted order.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from lmm_concepts.data.synthetic import vocabulary

PAD, BOS, EOS, UNK, IMAGE = "[PAD]", "[BOS]", "[EOS]", "[UNK]", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK, IMAGE)


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IMAGE], model_max_length=64,
        add_bos_token=True, add_eos_token=False, name_or_path="lmm-concepts-toy",
    )


def world_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer over the world's vocabulary (`lmm_concepts.data.synthetic.vocabulary`)."""
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *vocabulary()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return _wrap(tok)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    """Write the tokenizer as one ``tokenizer.json`` (the `tokenizers` format)."""
    from lmm_concepts._io import write_text

    write_text(path, tokenizer.backend_tokenizer.to_str(pretty=True))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Read a ``tokenizer.json`` written by `save_tokenizer`."""
    return _wrap(Tokenizer.from_file(str(path)))
