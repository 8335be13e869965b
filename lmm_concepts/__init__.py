"""lmm-concepts: concept-based explanations of large multimodal models (Parekh et al., 2024).

Importing the package registers its sae-lens architectures and has no other side effect.
"""

from lmm_concepts.dictionary import ConceptDictionary

__version__ = "0.1.0"

# The model layer pulls in TransformerLens, sae-lens and open_clip (seconds to import): it is loaded on first
# use, so `import lmm_concepts` and `lmm-concepts --help` stay fast.
_LAZY = {name: "lmm_concepts.models" for name in (
    "AttentionResampler", "GenerationOutput", "HookedLMM", "LlavaProjector", "LMMConfig", "PoolingResampler",
)}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmm_concepts' has no attribute {name!r}")

__all__ = [
    "AttentionResampler",
    "ConceptDictionary",
    "GenerationOutput",
    "HookedLMM",
    "LMMConfig",
    "LlavaProjector",
    "PoolingResampler",
    "__version__",
]
