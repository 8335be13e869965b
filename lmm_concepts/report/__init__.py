"""The HTML report: panel dataclasses -> JSON -> one self-contained page (templates are package data).

`make_report(...)` (`lc.make_report`) renders any run's outputs (the demo's go through it too);
`caption_activations(...)` gives every concept's activation at every token of a sample's caption.

The function is not called `report`: the package's own name, bound on `lmm_concepts` by the import system, would be
hidden by it (`from lmm_concepts.report import Panels` and `import lmm_concepts.report.build as b` then fail).
"""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:
    from lmm_concepts.report.along_caption import CaptionActivations, caption_activations
    from lmm_concepts.report.page import make_report
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

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

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
    "make_report",
    "render_html",
    "rerender",
    "thumbnail_b64",
    "write_report",
]
