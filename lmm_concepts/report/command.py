"""`lmm-concepts report <folder>`: re-render a report from its saved results."""

from __future__ import annotations

from dataclasses import dataclass

from simple_parsing import field


@dataclass
class ReportConfig:
    """Re-render `<folder>/report.html` from `<folder>/results.json` and `<folder>/panels.json`."""

    folder: str = field(positional=True)
    """a folder written by `lmm-concepts demo` (holds results.json)"""


def report_command(cfg: ReportConfig) -> None:
    from lmm_concepts.report.render import rerender

    path = rerender(cfg.folder)
    print(f"wrote {path}")
