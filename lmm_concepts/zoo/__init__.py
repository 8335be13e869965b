"""The toy DePALM: its recipe (`lmm-concepts train-toy`) and its shipped weights (`HookedLMM.toy()`)."""

from lmm_concepts.zoo.recipe import TrainToyConfig, train_toy
from lmm_concepts.zoo.toy import (
    CaptionAccuracy,
    ToyClip,
    ToyWeightsError,
    caption_accuracy,
    load_toy,
    load_toy_clip,
    load_toy_tokenizer,
)

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
