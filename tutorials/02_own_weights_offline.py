# %% [markdown]
# # Your own weights, offline: DePALM from local OPT + CLIP files, LLaVA-1.5 from a local HF folder
#
# Nothing here touches the network. Point the paths below at your files:
#
# - **DePALM**: an OPT folder written by `save_pretrained` (`config.json`, weights, tokenizer), an open_clip vision
#   tower (an architecture name — a built-in one such as `ViT-L-14`, or your own config registered with
#   `open_clip.add_model_config` — and a local checkpoint file), and a trained connector if you have one.
# - **LLaVA-1.5**: the folder written by `LlavaForConditionalGeneration.save_pretrained` (e.g. a local copy of
#   `llava-hf/llava-1.5-7b-hf`); every choice (feature layer, CLS dropping, projector activation) is read from its
#   config. For a 7B model pass `dtype=torch.float16, device="cuda"`.
#
# When a path does not exist, this tutorial writes a tiny random stand-in with the same layout there, so it runs
# anywhere (CI runs it that way). With random weights the captions are gibberish; the plumbing is the point.

# %%
import json
import os
from pathlib import Path

import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

import lmm_concepts as lc

ROOT = Path("runs/own_weights")
OPT_DIR = Path(os.environ.get("LMM_OPT_DIR", ROOT / "opt"))  # e.g. /models/opt-6.7b
CLIP_NAME = os.environ.get("LMM_CLIP_NAME", "tiny-ViT")  # e.g. ViT-L-14
CLIP_WEIGHTS = Path(os.environ.get("LMM_CLIP_WEIGHTS", ROOT / "clip" / "tiny-vit.safetensors"))
LLAVA_DIR = Path(os.environ.get("LMM_LLAVA_DIR", ROOT / "llava-1.5"))  # e.g. /models/llava-1.5-7b-hf
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# %% [markdown]
# ## Tiny stand-ins (skipped when the paths hold your files)

# %%
def word_tokenizer(extra_special=()):
    """A small word-level tokenizer, built in memory (a stand-in for OPT's / Llama's own)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a photo of the dog cat red blue ball on grass with and is in".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", "Answer", ":", *words, *extra_special])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", additional_special_tokens=list(extra_special) or None)


def write_tiny_opt(folder: Path) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    tok = word_tokenizer()
    cfg = OPTConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                    max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2)
    model = OPTForCausalLM(cfg)
    model.config.architectures = ["OPTForCausalLM"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


TINY_VIT = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}


def write_tiny_clip(weights: Path) -> None:
    weights.parent.mkdir(parents=True, exist_ok=True)
    model = open_clip.CLIP(**TINY_VIT)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))


def write_tiny_llava(folder: Path) -> None:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    tok = word_tokenizer(extra_special=("<image>",))
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=0)
    model = LlavaForConditionalGeneration(config)
    model.config.architectures = ["LlavaForConditionalGeneration"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


torch.manual_seed(0)
if not OPT_DIR.exists():
    write_tiny_opt(OPT_DIR)
if CLIP_NAME == "tiny-ViT":  # your own open_clip architecture: register its config file once per process
    config_file = CLIP_WEIGHTS.parent / "tiny-ViT.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(TINY_VIT))
    open_clip.add_model_config(config_file)
    if not CLIP_WEIGHTS.exists():
        write_tiny_clip(CLIP_WEIGHTS)
if not LLAVA_DIR.exists():
    write_tiny_llava(LLAVA_DIR)
images = [Image.new("RGB", (64, 64), colour) for colour in ["red", "blue"]]

# %% [markdown]
# ## DePALM: OPT + CLIP vision tower + connector
# Without `connector=`, the connector (mean-pooling resampler to N_v = 10 tokens + linear map) is freshly
# initialised: train it on captions first (see `lmm_concepts.zoo.recipe` for a full recipe), then save and
# reload it with `connector="path.safetensors"`.

# %%
depalm = lc.HookedLMM.depalm(llm=OPT_DIR, vision=CLIP_NAME, vision_weights=CLIP_WEIGHTS, n_visual_tokens=10,
                             device=DEVICE)
connector_file = depalm.save_connector(ROOT / "connector.safetensors")
depalm = lc.HookedLMM.depalm(llm=OPT_DIR, vision=CLIP_NAME, vision_weights=CLIP_WEIGHTS, connector=connector_file,
                             device=DEVICE)
out = depalm.generate(images, max_new_tokens=6)
print("DePALM captions:", out.texts)
assert len(out.texts) == len(images) and all(isinstance(t, str) for t in out.texts)

# %% [markdown]
# It is a TransformerLens model: the usual hook names, plus the wrapper's own `hook_visual_tokens`.

# %%
inputs = depalm.build_inputs(images)
logits, cache = depalm.run_with_cache(**inputs)
print("visual tokens:", tuple(cache["hook_visual_tokens"].shape), " residual after block 1:",
      tuple(cache["blocks.1.hook_resid_post"].shape))
d_model = depalm.cfg.d_model
assert tuple(cache["hook_visual_tokens"].shape) == (len(images), 10, d_model)  # n_visual_tokens=10 above
assert tuple(cache["blocks.1.hook_resid_post"].shape) == (*inputs["input_ids"].shape, d_model)

# %% [markdown]
# ## LLaVA-1.5 from a local folder

# %%
llava = lc.HookedLMM.llava(LLAVA_DIR, device=DEVICE)
llava_texts = llava.generate(images, max_new_tokens=6).texts
visual_hooks = [n for n in llava.hook_dict if "visual" in n]
print("LLaVA captions:", llava_texts)
print("n_visual_tokens:", llava.lmm_cfg.n_visual_tokens, " hook names:", visual_hooks)
assert len(llava_texts) == len(images) and llava.lmm_cfg.n_visual_tokens > 0
assert "hook_visual_tokens" in visual_hooks

# %% [markdown]
# From here the pipeline is the same as in the quickstart: `lc.extract(llava, dataset, token="dog", ...)`,
# `lc.SemiNMF(...)`, `lc.ground(...)`. `tutorials/paper_coco.py` runs the paper's whole COCO experiment this way.
