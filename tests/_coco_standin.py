"""A tiny stand-in for the paper's COCO setup: a random LLaVA-1.5-shaped checkpoint saved with HF
`save_pretrained`, a few generated images in a Karpathy-format split file, and tiny local CLIP and BERT folders.

The LLaVA is random except its unembedding: only a handful of animal/scene words have non-zero rows, so greedy
captions are strings of those words (image-dependent), "dog" among them often enough for extraction to keep
samples. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WORDS = ["dog", "cat", "ball", "park", "grass", "running", "frisbee", "a", "the", "photo", "of", "on", "with",
         "sitting", "bench", "street", "man", "woman", "red", "blue", "green", "tree", "car", "house"]
SPOKEN = ["dog", "cat", "ball", "park", "grass", "running", "frisbee", "bench"]


def save_standin_llava(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS, "<image>"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", additional_special_tokens=["<image>"])
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=vocab["<image>"],
                         vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=0)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "vision_tower" not in name:
                p.normal_(0, 0.5)
        head = model.get_output_embeddings().weight
        keep = torch.zeros(len(vocab), dtype=torch.bool)
        keep[[vocab[w] for w in SPOKEN]] = True
        head[~keep] = 0.0
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_karpathy(folder: Path, n_train: int = 40, n_test: int = 16, seed: int = 0) -> Path:
    """Random-blob PNGs under `folder/train2014` / `val2014` and `folder/dataset_coco.json` in Karpathy's format."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        sub = "train2014" if split == "train" else "val2014"
        name = f"COCO_{sub}_{i:012d}.jpg"
        (folder / sub).mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((48, 48), Image.NEAREST).save(folder / sub / name)
        animal = "dog" if i % 4 else "cat"
        sentences = [{"raw": f"A {animal} running on the grass with a ball."},
                     {"raw": f"The {animal} sitting on a bench in the park."}]
        images.append({"filepath": sub, "filename": name, "cocoid": 1000 + i, "imgid": i, "split": split,
                       "sentences": sentences})
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": images}))
    return path
