"""`lmm-concepts demo`: the whole method on the embedded toy model (see `pipeline.py`)."""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.demo.config import METHODS, DemoConfig
    from lmm_concepts.demo.pipeline import STAGES, DemoInputError, DemoState, run_demo

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = ["METHODS", "STAGES", "DemoConfig", "DemoInputError", "DemoState", "run_demo"]
