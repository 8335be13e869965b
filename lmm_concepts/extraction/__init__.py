"""Token-of-interest representations: captioning, the selection rule, positions and the on-disk store."""

from lmm_concepts.extraction.extract import extract
from lmm_concepts.extraction.store import RepresentationStore

__all__ = ["RepresentationStore", "extract"]
