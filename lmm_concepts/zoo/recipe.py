"""The toy DePALM recipe (`lmm-concepts train-toy`): three stages, as in DePALM, on the synthetic world.

1. **CLIP** — a tiny `open_clip.CLIP` (ResNet image tower, see `zoo/vision.py`) with the world's word-level vocabulary. A short supervised warm-up teaches
   the image tower the attributes (one linear head per attribute on the image embedding), then both towers are
   trained contrastively on captions and on word-list captions ("a photo is described by the words red , circle ,
   ..."), the text CLIPScore uses.
2. **LM** — a tiny TransformerLens `HookedTransformer` trained on the world's text. Each document is a caption
   preceded by ``n_visual_tokens`` context slots that hold its keywords (shuffled, padded with ","), i.e. a
   keywords-to-caption corpus: it gives the small LM the in-context reading that a large pretrained LM brings to
   DePALM, at the very positions the visual tokens will later occupy.
3. **Connector** — with CLIP and the LM frozen, a DePALM connector maps the image tower's last-layer tokens to
   ``n_visual_tokens`` LM embeddings, trained for captioning (next-token loss on the caption only).

Layout of a captioning sequence: ``[BOS] <image> x n_visual_tokens <prompt tokens> caption [EOS]``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lmm_concepts.data.synthetic import (
    ATTRIBUTES,
    SyntheticWorld,
    attribute_words,
    word_list_caption,
)
from lmm_concepts.zoo.architecture import build_clip, build_lm, encode_texts
from lmm_concepts.zoo.config import TrainToyConfig
from lmm_concepts.zoo.tokenizer import world_tokenizer

logger = logging.getLogger(__name__)  # training progress (`lmm-concepts train-toy` shows INFO on stderr)


# ---------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class WorldTensors:
    """A split of the world rendered into tensors once (training reads these, never PIL)."""

    images: Int[Tensor, "n 3 h w"]  # uint8
    labels: Int[Tensor, "n n_attributes"]  # class index per attribute (count: 0, 1, 2)
    captions: list[list[str]]
    attributes: list[dict]


def world_tensors(world: SyntheticWorld, split: str) -> WorldTensors:
    samples = list(world.split(split))
    images = torch.from_numpy(np.stack([np.asarray(s.image) for s in samples])).permute(0, 3, 1, 2).contiguous()
    words = attribute_words()
    values = {a: (words[a] if a != "count" else [1, 2, 3]) for a in ATTRIBUTES}
    labels = torch.tensor([[values[a].index(s.attributes[a]) for a in ATTRIBUTES] for s in samples])
    return WorldTensors(images, labels, [s.captions for s in samples], [s.attributes for s in samples])


def pixels(images: Int[Tensor, "b 3 h w"], device: str) -> Float[Tensor, "b 3 h w"]:
    """uint8 images -> the toy CLIP's input (scaled to [-1, 1])."""
    return (images.to(device).float() / 255.0 - 0.5) / 0.5


def keyword_slots(attributes: dict, n_slots: int, rng: np.random.Generator) -> list[str]:
    """The LM corpus's context: the caption's keywords in random order, padded with ","."""
    words = word_list_caption(attributes).split(" words ", 1)[1].split(" , ")
    rng.shuffle(words)
    return (words + [","] * n_slots)[:n_slots]


def _log(log: list[dict], stage: str, step: int, loss: float, t0: float, every: int, total: int) -> None:
    if step % every == 0 or step == total - 1:
        log.append({"stage": stage, "step": step, "loss": round(loss, 5), "seconds": round(time.time() - t0, 1)})
    if step % (5 * every) == 0 or step == total - 1:
        logger.info("[%s] step %d/%d loss %.4f (%.0fs)", stage, step + 1, total, loss, time.time() - t0)


def _cosine_lr(opt: torch.optim.Optimizer, lr: float, step: int, total: int, warmup: int = 30) -> None:
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))
    for g in opt.param_groups:
        g["lr"] = lr * scale


# ---------------------------------------------------------------------------------------------------------------
def train_clip(cfg: TrainToyConfig, data: WorldTensors, tokenizer, log: list[dict],
               gen: torch.Generator) -> nn.Module:
    c = cfg.clip
    clip = build_clip(c, cfg.image_size, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    clip.to(cfg.device).train()
    n_classes = [int(data.labels[:, j].max()) + 1 for j in range(len(ATTRIBUTES))]
    heads = nn.ModuleList(nn.Linear(c.embed_dim, k) for k in n_classes).to(cfg.device)
    word_lists = [word_list_caption(a) for a in data.attributes]
    n = len(data.images)
    t0 = time.time()

    def attribute_loss(emb: Tensor, idx: Tensor) -> Tensor:
        labels = data.labels[idx].to(cfg.device)
        return sum(F.cross_entropy(h(emb), labels[:, j]) for j, h in enumerate(heads)) / len(heads)

    opt = torch.optim.AdamW([*clip.visual.parameters(), *heads.parameters()], lr=c.lr, weight_decay=0.01)
    for step in range(c.warmup_steps):
        _cosine_lr(opt, c.lr, step, c.warmup_steps)
        idx = torch.randint(n, (c.batch_size,), generator=gen)
        loss = attribute_loss(clip.encode_image(pixels(data.images[idx], cfg.device)), idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _log(log, "clip-warmup", step, loss.item(), t0, 10, c.warmup_steps)

    opt = torch.optim.AdamW([*clip.parameters(), *heads.parameters()], lr=c.lr, weight_decay=0.01)
    for step in range(c.contrastive_steps):
        _cosine_lr(opt, c.lr, step, c.contrastive_steps)
        idx = torch.randint(n, (c.batch_size,), generator=gen)
        texts = [word_lists[i] if torch.rand(1, generator=gen).item() < 0.5
                 else data.captions[i][int(torch.randint(len(data.captions[i]), (1,), generator=gen))]
                 for i in idx.tolist()]
        img = clip.encode_image(pixels(data.images[idx], cfg.device))
        txt = clip.encode_text(encode_texts(tokenizer, texts, c.context_length).to(cfg.device))
        logits = clip.logit_scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
        # Identical texts in one batch are not negatives of each other.
        same = torch.tensor([[a == b for b in texts] for a in texts], device=cfg.device)
        logits_t = logits.masked_fill(same & ~torch.eye(len(texts), dtype=torch.bool, device=cfg.device), -1e4)
        target = torch.arange(len(texts), device=cfg.device)
        contrastive = (F.cross_entropy(logits_t, target) + F.cross_entropy(logits_t.T, target)) / 2
        loss = contrastive + 0.5 * attribute_loss(img, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
        _log(log, "clip-contrastive", step, contrastive.item(), t0, 10, c.contrastive_steps)
    return clip.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
def lm_config(cfg: TrainToyConfig, vocab_size: int):
    from transformer_lens import HookedTransformerConfig

    m = cfg.lm
    return HookedTransformerConfig(
        n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_head=m.d_model // m.n_heads, d_mlp=m.d_mlp,
        n_ctx=m.n_ctx, d_vocab=vocab_size, act_fn="gelu", normalization_type="LN",
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        model_name="lmm-concepts-toy-lm", seed=cfg.seed,
    )


def caption_batch(cfg: TrainToyConfig, tokenizer, captions: list[str], contexts: list[list[str]]
                  ) -> tuple[Int[Tensor, "b pos"], Int[Tensor, "b pos"]]:
    """Token ids ``context [BOS] prompt caption [EOS] [PAD]...`` (HookedLMM's DePALM layout, with the context
    where the visual tokens go) and the next-token targets (-100 outside the caption and its [EOS])."""
    prompt = tokenizer(cfg.prompt)["input_ids"]  # [BOS] + prompt words
    length = cfg.lm.n_ctx
    ids = torch.full((len(captions), length), tokenizer.pad_token_id, dtype=torch.long)
    targets = torch.full_like(ids, -100)
    used = 0
    for i, (cap, ctx) in enumerate(zip(captions, contexts, strict=True)):
        head = [*tokenizer.convert_tokens_to_ids(ctx), *prompt]
        body = tokenizer(cap, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        row = (head + body)[:length]
        ids[i, : len(row)] = torch.tensor(row)
        used = max(used, len(row))
        # position p predicts token p + 1: caption tokens are predicted from the last prefix position on.
        targets[i, len(head) - 1 : len(row) - 1] = torch.tensor(row[len(head):])
    return ids[:, :used], targets[:, :used]


def train_lm(cfg: TrainToyConfig, data: WorldTensors, tokenizer, log: list[dict], gen: torch.Generator):
    torch.manual_seed(cfg.seed)
    lm = build_lm(lm_config(cfg, len(tokenizer)), tokenizer)
    lm.to(cfg.device).train()
    m = cfg.lm
    opt = torch.optim.AdamW(lm.parameters(), lr=m.lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed)
    n = len(data.captions)
    t0 = time.time()
    for step in range(m.steps):
        _cosine_lr(opt, m.lr, step, m.steps)
        idx = torch.randint(n, (m.batch_size,), generator=gen).tolist()
        caps = [data.captions[i][rng.integers(len(data.captions[i]))] for i in idx]
        ctx = [keyword_slots(data.attributes[i], cfg.n_visual_tokens, rng) for i in idx]
        ids, targets = caption_batch(cfg, tokenizer, caps, ctx)
        logits = lm(ids.to(cfg.device), return_type="logits")
        loss = F.cross_entropy(logits.flatten(0, 1), targets.to(cfg.device).flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _log(log, "lm", step, loss.item(), t0, 10, m.steps)
    return lm.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
def lmm_config(cfg: TrainToyConfig, tokenizer):
    from lmm_concepts.models.config import LMMConfig

    return LMMConfig(family="toy", n_visual_tokens=cfg.n_visual_tokens,
                     image_token_id=tokenizer.convert_tokens_to_ids("<image>"), prompt=cfg.prompt,
                     image_size=cfg.image_size, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
                     vision={"name": "toy-clip-resnet", "tokens": "attention-pool output"})


def build_connector(cfg: TrainToyConfig) -> nn.Module:
    from lmm_concepts.models.connectors import AttentionResampler, PoolingResampler

    if cfg.connector.kind == "attention":
        return AttentionResampler(cfg.clip.embed_dim, cfg.lm.d_model, cfg.n_visual_tokens, d_hidden=cfg.connector.d_hidden,
                                  n_heads=4, n_layers=cfg.connector.n_layers)
    if cfg.connector.kind == "pool":
        return PoolingResampler(cfg.clip.embed_dim, cfg.lm.d_model, cfg.n_visual_tokens, pool="avg", proj="mlp",
                                d_hidden=cfg.connector.d_hidden)
    raise ValueError(f"connector.kind must be 'attention' or 'pool', got {cfg.connector.kind!r}")


@torch.no_grad()
def vision_features(vision: nn.Module, images: Int[Tensor, "n 3 h w"], device: str, chunk: int = 256) -> Tensor:
    """The frozen image tower's tokens for every image, computed once (the connector stage reuses them)."""
    return torch.cat([vision(pixels(images[i : i + chunk], device)) for i in range(0, len(images), chunk)])


def train_connector(cfg: TrainToyConfig, data: WorldTensors, tokenizer, lmm, log: list[dict],
                    gen: torch.Generator):
    """Train `lmm.connector` for captioning; the vision tower and the LM stay frozen."""
    k = cfg.connector
    lmm.eval().requires_grad_(False)  # the frozen ResNet's batch norm uses its running statistics
    connector = lmm.connector.train().requires_grad_(True)
    opt = torch.optim.AdamW(connector.parameters(), lr=k.lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed + 1)
    feats = vision_features(lmm.vision, data.images, cfg.device)
    n = len(data.captions)
    placeholders = ["<image>"] * cfg.n_visual_tokens
    t0 = time.time()
    for step in range(k.steps):
        _cosine_lr(opt, k.lr, step, k.steps)
        idx = torch.randint(n, (k.batch_size,), generator=gen)
        caps = [data.captions[i][rng.integers(len(data.captions[i]))] for i in idx.tolist()]
        ids, targets = caption_batch(cfg, tokenizer, caps, [placeholders] * len(caps))
        logits = lmm(ids.to(cfg.device), visual_tokens=connector(feats[idx]), return_type="logits")
        loss = F.cross_entropy(logits.flatten(0, 1), targets.to(cfg.device).flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _log(log, "connector", step, loss.item(), t0, 10, k.steps)
    connector.eval().requires_grad_(False)
    return lmm


# ---------------------------------------------------------------------------------------------------------------
def train_toy(cfg: TrainToyConfig) -> dict:
    """Run the whole recipe into `cfg.out`. A stage whose weights are already there (from an interrupted run
    with the same config) is loaded instead of retrained. Returns the caption-accuracy summary."""
    from lmm_concepts._io import read_json, write_json
    from lmm_concepts.models.hooked_lmm import HookedLMM
    from lmm_concepts.zoo.toy import caption_accuracy, load_clip_part, load_lm_part, save_toy
    from lmm_concepts.zoo.vision import ResNetClipVision

    out = Path(cfg.out)
    saved_cfg = out / "train_config.json"
    if out.exists() and any(out.iterdir()):
        if not saved_cfg.is_file() and not cfg.overwrite:
            raise FileExistsError(f"{out} exists and is not a train-toy folder; pick another --out or pass --overwrite")
        if saved_cfg.is_file() and read_json(saved_cfg) != dataclasses.asdict(cfg) and not cfg.overwrite:
            raise FileExistsError(f"{out} holds a toy model trained with another config; pass --overwrite to replace "
                                  "it or pick another --out (a rerun with the same config resumes)")
        if cfg.overwrite:
            for name in ("clip.safetensors", "lm.safetensors", "connector.safetensors"):
                (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved_cfg, dataclasses.asdict(cfg))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    tokenizer = world_tokenizer()
    world = SyntheticWorld(cfg.seed, cfg.n_train, cfg.n_test, cfg.image_size)
    data = world_tensors(world, "train")
    log: list[dict] = []
    logger.info("world: %d train / %d test images (%.0fs)", cfg.n_train, cfg.n_test, time.time() - t0)

    clip_meta = {"clip": dataclasses.asdict(cfg.clip), "image_size": cfg.image_size}
    if (out / "clip.safetensors").is_file():
        clip, _ = load_clip_part(out, tokenizer)
        clip.to(cfg.device)
    else:
        clip = train_clip(cfg, data, tokenizer, log, torch.Generator().manual_seed(cfg.seed))
        save_toy(out, tokenizer, clip, clip_meta, None, {})
    lm_meta = {"config": {k: v for k, v in dataclasses.asdict(cfg.lm).items()
                          if k in ("d_model", "n_layers", "n_heads", "d_mlp", "n_ctx")}}
    tl_cfg = lm_config(cfg, len(tokenizer))
    lm_meta["config"] = {k: getattr(tl_cfg, k) for k in (
        "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx", "d_vocab", "act_fn", "normalization_type",
        "positional_embedding_type", "original_architecture", "model_name", "seed")}
    if (out / "lm.safetensors").is_file():
        lm = load_lm_part(out, tokenizer).to(cfg.device)
    else:
        lm = train_lm(cfg, data, tokenizer, log, torch.Generator().manual_seed(cfg.seed + 1))
        save_toy(out, tokenizer, None, {}, lm, lm_meta)

    torch.manual_seed(cfg.seed + 2)
    lmm = HookedLMM.from_parts(lm, ResNetClipVision(clip.visual), build_connector(cfg),
                               lmm_config(cfg, tokenizer))
    if (out / "connector.safetensors").is_file():
        lmm.load_connector(out / "connector.safetensors")
    else:
        train_connector(cfg, data, tokenizer, lmm, log, torch.Generator().manual_seed(cfg.seed + 2))
        save_toy(out, tokenizer, None, {}, None, {}, lmm=lmm)
    lmm.eval()
    summary: dict[str, Any] = {"train_seconds": round(time.time() - t0, 1), "log": log}
    if cfg.eval_samples:
        acc = caption_accuracy(lmm, world.test, n=cfg.eval_samples)
        summary["caption_accuracy"] = acc.to_dict()
        logger.info("caption accuracy, one object: %s\n  multi-object: %s", acc.one_object, acc.multi_object)
    write_json(out / "train_summary.json", summary)
    logger.info("toy model written to %s (%.0fs)", out, time.time() - t0)
    return summary
