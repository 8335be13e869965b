"""The toy DePALM: its recipe (`lmm-concepts train-toy`) and its shipped weights (`HookedLMM.toy()`)."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.zoo.config import TrainToyConfig
    from lmm_concepts.zoo.recipe import train_toy
    from lmm_concepts.zoo.toy import (
        CaptionAccuracy,
        ToyClip,
        ToyWeightsError,
        caption_accuracy,
        load_toy,
        load_toy_clip,
        load_toy_tokenizer,
    )

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "CaptionAccuracy",
    "ToyClip",
    "ToyWeightsError",
    "TrainToyConfig",
    "caption_accuracy",
    "load_toy",
    "load_toy_clip",
    "load_toy_tokenizer",
    "train_toy",
]
