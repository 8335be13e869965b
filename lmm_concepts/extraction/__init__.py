"""Token-of-interest representations: captioning, the selection rule, positions and the on-disk store."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.extraction.extract import extract
    from lmm_concepts.extraction.store import RepresentationStore

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = ["RepresentationStore", "extract"]
