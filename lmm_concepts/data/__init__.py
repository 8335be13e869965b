"""Image-caption datasets, decoded lazily and read in a fixed order of batches; and the synthetic world."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.data.base import CaptionDataset, IterableCaptions, Sample, as_dataset, iter_batches
    from lmm_concepts.data.coco import CocoKarpathy
    from lmm_concepts.data.hf import HFDiskCaptions
    from lmm_concepts.data.synthetic import (
        SyntheticWorld,
        WorldSample,
        attribute_words,
        parse_caption,
        shape_nouns,
    )
    from lmm_concepts.data.table import CsvCaptions, JsonlCaptions

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = [
    "CaptionDataset",
    "CocoKarpathy",
    "CsvCaptions",
    "HFDiskCaptions",
    "IterableCaptions",
    "JsonlCaptions",
    "Sample",
    "SyntheticWorld",
    "WorldSample",
    "as_dataset",
    "attribute_words",
    "iter_batches",
    "parse_caption",
    "shape_nouns",
]
