"""Hand-made fixtures for the extraction tests: in-memory tokenizers with known pieces, and a scripted model.

The scripted model (`ScriptedLMM`) generates captions fixed in advance per image and returns, at every hook, a
vector that spells out where it was taken (layer, unpadded position, token id), so position rules can be checked
exactly, independent of a random model's output.
"""

from __future__ import annotations

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

from lmm_concepts.models.interface import FINAL_HOOK, GenerationOutput, weights_digest

BYTE_PIECES = [
    "Ġa", "Ġdog", "Ġdogs", "Dog", "dog", "Ġhot", "Ġhotdog", "Ġpup", "py", "Ġpuppies", "Ġ", "today", "Ġtoday",
    "Ġon", "Ġthe", "Ġgrass", "Ġcat", "Ġboxes", "Ġbox", ".", "Ġphoto", "Ġof", "<img>",
]  # fmt: skip


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2-like byte-level tokenizer: leading-space pieces ("Ġdog"), a whitespace-only piece ("Ġ")."""
    vocab = {"<eos>": 0}
    for c in sorted(ByteLevel.alphabet()):
        vocab.setdefault(c, len(vocab))
    for p in BYTE_PIECES:
        vocab.setdefault(p, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<eos>")


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A sentencepiece-like tokenizer: "▁" marks a space and may stand alone; unknown words map to <unk>."""
    vocab = {"<eos>": 0, "<unk>": 1, "▁": 2, "today": 3, "▁a": 4, "▁dog": 5, "▁day": 6, "▁to": 7, "day": 8}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")


def ids(tok: PreTrainedTokenizerFast, pieces: list[str]) -> list[int]:
    """Token ids of the named pieces (so a test spells out the exact token sequence)."""
    out = tok.convert_tokens_to_ids(pieces)
    assert None not in out and tok.unk_token_id not in out, pieces
    return out


def coded_image(code: int) -> Image.Image:
    """A 4×4 image whose red channel carries `code` (the scripted model reads it back)."""
    return Image.new("RGB", (4, 4), (code, 0, 0))


class _Cfg:
    n_layers = 2
    d_model = 4


class ScriptedLMM(torch.nn.Module):
    """Generates `scripts[code]` (a list of pieces) for the image coded `code`.

    Prompts: `n_visual` placeholders then `prompt_pieces[code % len(prompt_pieces)]`, left-padded to a common
    length — so rows of one batch have different amounts of padding. At every hook, the vector at padded index p
    of row b is [layer, p − n_pad(b), token id, code].
    """

    HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post", FINAL_HOOK)

    def __init__(self, scripts: dict[int, list[str]], prompt_pieces=(["Ġphoto"], ["Ġa", "Ġphoto", "Ġof"]), n_visual=2):
        super().__init__()
        self.tokenizer = byte_level_tokenizer()
        self.cfg = _Cfg()
        self.lmm_cfg = {"kind": "scripted", "n_visual": n_visual}
        self.hook_dict = dict.fromkeys(self.HOOKS)
        self.scripts, self.prompt_pieces, self.n_visual = scripts, prompt_pieces, n_visual
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.forward_calls: list[tuple[int, int]] = []
        self.generate_calls: list[int] = []

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    def generate(self, images, prompt=None, max_new_tokens=8):
        codes = [int(im.getpixel((0, 0))[0]) for im in images]
        self.generate_calls.append(len(codes))
        tok, eos = self.tokenizer, self.tokenizer.eos_token_id
        img = tok.convert_tokens_to_ids("<img>")
        prompts = [[img] * self.n_visual + ids(tok, self.prompt_pieces[c % len(self.prompt_pieces)]) for c in codes]
        P = max(len(p) for p in prompts)
        gens = [ids(tok, self.scripts[c])[:max_new_tokens] for c in codes]
        gens = [g + [eos] * (max_new_tokens - len(g)) for g in gens]
        seq = torch.tensor([[eos] * (P - len(p)) + p + g for p, g in zip(prompts, gens, strict=True)])
        mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) + [1] * max_new_tokens for p in prompts])
        texts = [tok.decode(g, skip_special_tokens=True) for g in gens]
        pix = torch.tensor(codes, dtype=torch.float32)[:, None, None, None].expand(-1, 3, 4, 4)
        return GenerationOutput(seq, mask, {"pixel_values": pix}, P, seq[:, P:], texts)

    def identity(self) -> dict:
        return {"class": type(self).__name__, "config": self.lmm_cfg, "n_layers": self.n_layers,
                "d_model": self.d_model, "weights_digest": weights_digest(self.named_parameters())}

    def capture(self, inputs, names, fwd_hooks=()):
        input_ids, attention_mask, pixel_values = inputs.input_ids, inputs.attention_mask, inputs.pixel_values
        self.forward_calls.append(tuple(input_ids.shape))
        b, L = input_ids.shape
        n_pad = (attention_mask.cumsum(1) == 0).sum(1)
        pos = torch.arange(L)[None, :] - n_pad[:, None]
        code = pixel_values[:, 0, 0, 0][:, None].expand(b, L)
        cache = {}
        for h in names:
            layer = self.HOOKS.index(h)
            cache[h] = torch.stack([torch.full((b, L), float(layer)), pos.float(), input_ids.float(), code], -1)
        return cache
