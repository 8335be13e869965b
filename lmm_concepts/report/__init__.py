"""The HTML report: panel dataclasses -> JSON -> one self-contained page (templates are package data).

`report(...)` renders any run's outputs (the demo's go through it too); `caption_activations(...)` gives every
concept's activation at every token of a sample's caption.

`lmm_concepts.report` is both this package and, called, the `report` function (`lc.report(expl, store, out=...)`):
a module attribute of the same name would hide the package from `import lmm_concepts.report.build as b`, so the
package itself is made callable instead.
"""

import inspect
import sys
import types

from lmm_concepts.report.along_caption import CaptionActivations, caption_activations
from lmm_concepts.report.page import report
from lmm_concepts.report.panels import (
    CaptionPanel,
    ConceptPanel,
    ImagePanel,
    MethodPanels,
    Panels,
    Word,
    histogram,
    thumbnail_b64,
)
from lmm_concepts.report.render import render_html, rerender, write_report

__all__ = [
    "CaptionActivations",
    "CaptionPanel",
    "ConceptPanel",
    "ImagePanel",
    "MethodPanels",
    "Panels",
    "Word",
    "caption_activations",
    "histogram",
    "render_html",
    "report",
    "rerender",
    "thumbnail_b64",
    "write_report",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as `report` (see the module docstring)."""

    __call__ = staticmethod(report)


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(report)  # what help() and inspect show for `lmm_concepts.report(...)`
