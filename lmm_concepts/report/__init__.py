"""The HTML report: panel dataclasses -> JSON -> one self-contained page (templates are package data)."""

from lmm_concepts.report.panels import (
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
    "ConceptPanel",
    "ImagePanel",
    "MethodPanels",
    "Panels",
    "Word",
    "histogram",
    "render_html",
    "rerender",
    "thumbnail_b64",
    "write_report",
]
