"""Connectors: vision features `[batch, n_tokens, d_vision]` -> visual tokens `[batch, n_visual, d_model]`.

- `PoolingResampler`: DePALM's pooling resamplers. The CLIP tokens are split into `n_visual` contiguous groups,
  each group is averaged (or max-pooled), then projected (linear, or Linear-GELU-Linear).
- `AttentionResampler`: DePALM's learned-query resampler (QPMapper-like): `n_visual` learned queries
  cross-attend to the projected features through a few pre-norm transformer layers.
- `LlavaProjector`: LLaVA-1.5's Linear-act-Linear projector applied token-wise (n_visual = n_tokens).

Every connector exposes `config()` (its JSON hyper-parameters, with a "type" key) and is rebuilt by
`connector_from_config`, which is how `HookedLMM.load_connector` reads a saved connector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor, nn

from lmm_concepts._io import read_json
from lmm_concepts.models.checkpoints import load_weights_checked
from lmm_concepts.models.config import LMMConfig

_ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    """A torch activation module from an HF-style name ("gelu", "quick_gelu", "silu", ...)."""
    if name == "quick_gelu":
        return QuickGELU()
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        name = "gelu_tanh"
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {sorted([*_ACTIVATIONS, 'quick_gelu'])}")
    return _ACTIVATIONS[name]()


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def _mlp(d_in: int, d_hidden: int, d_out: int, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), activation(act), nn.Linear(d_hidden, d_out))


class PoolingResampler(nn.Module):
    """Pool the vision tokens into `n_visual` contiguous groups, then project each group to d_model."""

    def __init__(self, d_vision: int, d_model: int, n_visual: int = 10, pool: str = "avg", proj: str = "linear",
                 d_hidden: int | None = None, act: str = "gelu"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        if proj not in ("linear", "mlp"):
            raise ValueError(f"proj must be 'linear' or 'mlp', got {proj!r}")
        self.d_vision, self.d_model, self.n_visual = d_vision, d_model, n_visual
        self.pool, self.proj_type, self.act = pool, proj, act
        self.d_hidden = d_hidden or d_model
        self.proj = nn.Linear(d_vision, d_model) if proj == "linear" else _mlp(d_vision, self.d_hidden, d_model, act)

    def forward(self, features: Float[Tensor, "batch n_tokens d_vision"]) -> Float[Tensor, "batch n_visual d_model"]:
        if features.shape[1] < self.n_visual:
            raise ValueError(f"{features.shape[1]} vision tokens cannot be pooled into {self.n_visual} groups")
        x = features.transpose(1, 2)  # [batch, d_vision, n_tokens]
        pooled = F.adaptive_avg_pool1d(x, self.n_visual) if self.pool == "avg" else F.adaptive_max_pool1d(x, self.n_visual)
        return self.proj(pooled.transpose(1, 2))

    def config(self) -> dict[str, Any]:
        return {"type": "pooling", "d_vision": self.d_vision, "d_model": self.d_model, "n_visual": self.n_visual,
                "pool": self.pool, "proj": self.proj_type, "d_hidden": self.d_hidden, "act": self.act}


class _CrossAttentionLayer(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_mlp = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.mlp = _mlp(d, 4 * d, d, "gelu")

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        kv = self.ln_kv(kv)
        q = q + self.attn(self.ln_q(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.ln_mlp(q))


class AttentionResampler(nn.Module):
    """`n_visual` learned queries cross-attend to the (projected) vision tokens."""

    def __init__(self, d_vision: int, d_model: int, n_visual: int = 10, d_hidden: int = 256, n_heads: int = 4,
                 n_layers: int = 2):
        super().__init__()
        if d_hidden % n_heads:
            raise ValueError(f"d_hidden ({d_hidden}) must be divisible by n_heads ({n_heads})")
        self.d_vision, self.d_model, self.n_visual = d_vision, d_model, n_visual
        self.d_hidden, self.n_heads, self.n_layers = d_hidden, n_heads, n_layers
        self.proj_in = nn.Linear(d_vision, d_hidden)
        self.queries = nn.Parameter(torch.randn(n_visual, d_hidden) * d_hidden**-0.5)
        self.layers = nn.ModuleList(_CrossAttentionLayer(d_hidden, n_heads) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_hidden)
        self.proj_out = nn.Linear(d_hidden, d_model)

    def forward(self, features: Float[Tensor, "batch n_tokens d_vision"]) -> Float[Tensor, "batch n_visual d_model"]:
        kv = self.proj_in(features)
        q = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, kv)
        return self.proj_out(self.ln_out(q))

    def config(self) -> dict[str, Any]:
        return {"type": "attention", "d_vision": self.d_vision, "d_model": self.d_model, "n_visual": self.n_visual,
                "d_hidden": self.d_hidden, "n_heads": self.n_heads, "n_layers": self.n_layers}


class LlavaProjector(nn.Module):
    """LLaVA-1.5's multi-modal projector: Linear(d_vision, d_model) - act - Linear(d_model, d_model), with biases.

    Parameter names match HF's `multi_modal_projector` (`linear_1`, `linear_2`), so its weights load as they are.
    """

    def __init__(self, d_vision: int, d_model: int, act: str = "gelu", bias: bool = True):
        super().__init__()
        self.d_vision, self.d_model, self.act_name, self.bias = d_vision, d_model, act, bias
        self.linear_1 = nn.Linear(d_vision, d_model, bias=bias)
        self.act = activation(act)
        self.linear_2 = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, features: Float[Tensor, "batch n_tokens d_vision"]) -> Float[Tensor, "batch n_tokens d_model"]:
        return self.linear_2(self.act(self.linear_1(features)))

    def config(self) -> dict[str, Any]:
        return {"type": "llava", "d_vision": self.d_vision, "d_model": self.d_model, "act": self.act_name,
                "bias": self.bias}


CONNECTORS: dict[str, type[nn.Module]] = {
    "pooling": PoolingResampler,
    "attention": AttentionResampler,
    "llava": LlavaProjector,
}


def connector_from_config(cfg: dict[str, Any]) -> nn.Module:
    """Rebuild a connector (random weights) from its `config()` dict."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in CONNECTORS:
        raise ValueError(f"unknown connector type {kind!r} in the connector config; known: {sorted(CONNECTORS)}")
    try:
        return CONNECTORS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"connector config for type {kind!r} does not fit {CONNECTORS[kind].__name__}: {e}") from e


def connector_config(connector: nn.Module) -> dict[str, Any]:
    """The JSON hyper-parameters of a connector; a custom module must define `config()` to be saved."""
    if not hasattr(connector, "config"):
        raise TypeError(f"{type(connector).__name__} has no config() method, so it cannot be saved and rebuilt; "
                        "use one of lmm_concepts.models.connectors or add config() returning its hyper-parameters")
    return connector.config()


def load_connector_file(path: str | Path) -> tuple[nn.Module, LMMConfig]:
    """Read a connector saved by `HookedLMM.save_connector`: (connector with its weights, its LMMConfig)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    cfg_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"connector weights not found: {path} (save them with HookedLMM.save_connector)")
    if not cfg_path.is_file():
        raise FileNotFoundError(f"connector config not found: {cfg_path}; it is written beside the weights by "
                                "HookedLMM.save_connector and holds the connector's hyper-parameters")
    cfg = read_json(cfg_path)
    if "connector" not in cfg or "lmm" not in cfg:
        raise ValueError(f"{cfg_path} is not a connector config (needs 'lmm' and 'connector' keys)")
    connector = connector_from_config(cfg["connector"])
    load_weights_checked(connector, load_file(str(path)), str(path))
    return connector, LMMConfig.from_dict(cfg["lmm"])
