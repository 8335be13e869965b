"""Tiny fixtures for the grounding / metrics / steering tests: a word-level tokenizer, a 2-layer HookedTransformer
with a planted unembedding, an in-memory stand-in for RepresentationStore, and a hand-set dictionary."""

from __future__ import annotations

import warnings

import torch
from PIL import Image
from torch import Tensor

from lmm_concepts.dictionary.base import ConceptDictionary
from lmm_concepts.models.interface import FINAL_HOOK

VOCAB = [
    "<unk>", "<bos>",
    # concept 0 words (and case / leading-space variants)
    "dog", "Dog", "Ġdog", "puppy", "leash", "bark",
    # concept 1 words
    "beach", "Ġbeach", "ocean", "sand", "wave",
    # concept 2 words
    "pizza", "cheese", "oven", "slice",
    # filler: stopwords, short tokens, non-words, numbers
    "the", "and", "of", "is", "at", "an", "xq", "zzv", "qwrt", "42", "7", ",", ".",
    "red", "blue", "green", "car", "tree", "house", "river", "city", "road", "chair", "table", "lamp",
]
PLANTED = {0: ["dog", "puppy", "leash", "bark"], 1: ["beach", "ocean", "sand", "wave"], 2: ["pizza", "cheese", "oven", "slice"]}


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(VOCAB)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<bos>", eos_token="<bos>", pad_token="<unk>", add_bos_token=True
    )
    tok.init_kwargs["name_or_path"] = "in-memory-word-level"
    return tok


def tiny_model(d_model: int = 16, n_layers: int = 2, seed: int = 0):
    """A random 2-layer LayerNorm HookedTransformer over VOCAB, as an `LMM` (`as_lmm`: no image reaches it)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_ctx=16, d_head=4, n_heads=d_model // 4, d_vocab=len(VOCAB),
        act_fn="gelu", normalization_type="LN", seed=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg, tokenizer=tiny_tokenizer())
    return as_lmm(model.eval())


def concept_vectors(d_model: int = 16, k: int = 3, seed: int = 1) -> Tensor:
    """k orthonormal, zero-mean vectors (rows)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d_model, k, generator=g)
    A = A - A.mean(0, keepdim=True)
    Q, _ = torch.linalg.qr(A)
    return Q.T.contiguous()


def plant_unembedding(model, U: Tensor, strength: float = 6.0) -> None:
    """W_U columns of each concept's planted tokens (and variants) ← strength·u_k + small noise."""
    tok_id = {w: i for i, w in enumerate(VOCAB)}
    with torch.no_grad():
        model.W_U.mul_(0.1)
        for k, words in PLANTED.items():
            for rank, w in enumerate(words):
                for variant in (w, w.capitalize(), "Ġ" + w):
                    if variant in tok_id:
                        model.W_U[:, tok_id[variant]] = (strength - 0.5 * rank) * U[k]


class HandDictionary(ConceptDictionary):
    """A dictionary with W_dec set by hand; codes are relu(Z·W_decᵀ) (exact for orthonormal rows)."""

    architecture = "hand"

    def __init__(self, W_dec: Tensor):
        super().__init__(W_dec.shape[0])
        self.W_dec = W_dec.clone()

    def fit(self, Z):
        Z = self._as_tensor(Z, fitting=True)
        _, _, Vh = torch.linalg.svd(Z - 0 * Z.mean(0), full_matrices=False)
        self.W_dec = Vh[: self.n_concepts].clone()
        return self

    def encode(self, Z):
        Z = self._as_tensor(Z, fitting=False)
        return (Z @ self.W_dec.T).clamp_min(0)


class MemoryStore:
    """Stand-in for RepresentationStore with the attributes grounding and metrics read."""

    def __init__(self, layers: dict[str, Tensor], captions: list[list[str]] | None = None, images=None, model="tiny"):
        self._layers = layers
        n = next(iter(layers.values())).shape[0]
        self.sample_ids = [f"s{i}" for i in range(n)]
        self._images = images
        caps = captions or [["a photo"] for _ in range(n)]
        self.metadata = [
            {"sample_id": f"s{i}", "image_path": f"img/{i}.png", "captions": caps[i], "generated": "", "position": 0}
            for i in range(n)
        ]
        self.manifest = {"model": model, "layers": list(layers), "word": "dog", "prompt": "", "position": "predicts"}
        self.rejections = []

    @property
    def layers(self) -> list[str]:
        return list(self._layers)

    def layer(self, name: str) -> Tensor:
        if name == "final" and "final" not in self._layers:
            name = FINAL_HOOK
        return self._layers[name]

    def images(self, ids) -> list[Image.Image]:
        idx = [self.sample_ids.index(i) for i in ids]
        if self._images is not None:
            return [self._images[i] for i in idx]
        return [Image.new("RGB", (32, 32), (37 * i % 255, 91 * i % 255, 53 * i % 255)) for i in idx]


def planted_store(U: Tensor, n_per_concept: int = 6, noise: float = 0.05, seed: int = 2, layer: str = "final"):
    """Samples that are each one concept (scaled) plus noise: sample i belongs to concept i % K."""
    g = torch.Generator().manual_seed(seed)
    K, d = U.shape
    n = K * n_per_concept
    labels = torch.arange(n) % K
    scale = 1.0 + torch.rand(n, generator=g)
    Z = scale[:, None] * U[labels] + noise * torch.randn(n, d, generator=g)
    caps = [[f"a {PLANTED[int(k)][0]} photo", f"the {PLANTED[int(k)][1]} here"] for k in labels]
    return MemoryStore({layer: Z}, captions=caps), labels


def planted_world():
    """(tiny model with the planted unembedding, its concept vectors U, a planted store, the store's labels)."""
    model = tiny_model()
    U = concept_vectors()
    plant_unembedding(model, U)
    store, labels = planted_store(U)
    return model, U, store, labels


BERT_WORDS = ["dog", "puppy", "leash", "bark", "beach", "ocean", "sand", "wave", "pizza", "cheese", "oven", "slice",
              "a", "the", "photo", "of", "on", "here", "with", "and", "running", "red", "blue", "car"]


def tiny_bert(folder) -> str:
    """A 2-layer BERT with random weights and a WordPiece vocabulary, saved to `folder` (no download)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, ",", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(folder)
    return str(folder)


TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_folder(folder) -> str:
    """A random-weight open_clip CLIP saved as an open_clip local-dir folder (config + safetensors)."""
    import json

    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    cfg = {"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return str(folder)


def as_lmm(llm):
    """A text-only HookedTransformer as an `LMM` (a HookedLMM sharing its weights; no image ever reaches it)."""
    from torch import nn

    from lmm_concepts.models import HookedLMM
    from lmm_concepts.models.config import LMMConfig

    cfg = LMMConfig(family="none", n_visual_tokens=1, image_token_id=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HookedLMM.from_parts(llm, nn.Identity(), nn.Identity(), cfg).eval()


def token_sequences(tokens: Tensor, positions: Tensor):
    """Token rows (no padding, no image) and each row's token of interest as `StoreSequences`."""
    from lmm_concepts.metrics.sequences import StoreSequences
    from lmm_concepts.models.interface import ModelInputs

    inputs = ModelInputs(tokens, torch.ones_like(tokens), {})
    return StoreSequences(inputs, positions.long(), [f"s{i}" for i in range(tokens.shape[0])])
