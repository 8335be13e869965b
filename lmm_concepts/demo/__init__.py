"""`lmm-concepts demo`: the whole method on the embedded toy model (see `pipeline.py`)."""

from lmm_concepts.demo.config import METHODS, DemoConfig
from lmm_concepts.demo.pipeline import STAGES, DemoInputError, DemoState, run_demo

__all__ = ["METHODS", "STAGES", "DemoConfig", "DemoInputError", "DemoState", "run_demo"]
