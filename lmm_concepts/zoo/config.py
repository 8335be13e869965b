"""The toy's training options (`lmm-concepts train-toy`): plain dataclasses, no torch, so `--help` is fast."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class ClipConfig:
    """The tiny CLIP and how it is trained."""

    embed_dim: int = 64
    """Joint embedding size (also the width of the image tokens the connector reads)."""
    width: int = 16
    """Base width of the image tower (open_clip ModifiedResNet; the last stage has 32 x width channels)."""
    blocks: int = 1
    """Residual blocks per ResNet stage (4 stages)."""
    text_width: int = 64
    """Text tower width."""
    text_layers: int = 1
    """Text tower depth."""
    context_length: int = 24
    """Text tower context (tokens)."""
    warmup_steps: int = 1000
    """Supervised warm-up steps of the image tower (attribute heads)."""
    contrastive_steps: int = 400
    """Contrastive steps of both towers."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, cosine decay)."""


@dataclasses.dataclass
class LMConfig:
    """The tiny HookedTransformer language model and how it is trained."""

    d_model: int = 64
    """Residual stream width."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""
    d_mlp: int = 256
    """MLP hidden width."""
    n_ctx: int = 32
    """Context length (visual tokens + [BOS] + prompt + caption)."""
    steps: int = 500
    """Training steps."""
    batch_size: int = 64
    """Documents per step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, cosine decay)."""


@dataclasses.dataclass
class ConnectorConfig:
    """The DePALM connector and how it is trained (CLIP and the LM frozen)."""

    kind: str = "attention"
    """"pool" (pooling resampler + MLP) or "attention" (learned-query attention)."""
    d_hidden: int = 64
    """Connector hidden width."""
    n_layers: int = 1
    """Cross-attention layers (attention connector)."""
    steps: int = 600
    """Training steps."""
    batch_size: int = 64
    """Captions per step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, cosine decay)."""


@dataclasses.dataclass
class TrainToyConfig:
    """Reproduce the shipped toy DePALM: world -> CLIP -> LM -> connector."""

    out: str = "runs/toy"
    """Folder for the weights, configs, tokenizer and training log."""
    seed: int = 0
    """Seed of the world and of every initialisation."""
    n_train: int = 6000
    """Training images of the world."""
    n_test: int = 500
    """Test images (caption accuracy is measured on them)."""
    image_size: int = 64
    """Image side in pixels."""
    n_visual_tokens: int = 10
    """N_v, visual tokens fed to the LM (the paper's DePALM setting is 10)."""
    prompt: str = ""
    """Text between the visual tokens and the caption."""
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    lm: LMConfig = dataclasses.field(default_factory=LMConfig)
    connector: ConnectorConfig = dataclasses.field(default_factory=ConnectorConfig)
    threads: int = 2
    """torch CPU threads."""
    device: str = "cpu"
    """Training device ("cpu", "cuda", ...)."""
    eval_samples: int = 500
    """Test images captioned for the accuracy figures (0 skips the evaluation)."""
    overwrite: bool = False
    """Replace the weights already in `out`."""
