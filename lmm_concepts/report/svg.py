"""Small inline-SVG plots for the HTML report (histogram, line plot, horizontal bars).

Hand-written rather than matplotlib: a few dozen elements each, no font files or external references, and
every label passes through `html.escape`, so strings from a tokenizer or a dataset can't break the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return "0"
    if abs(x) >= 100 or abs(x) < 0.01:
        return f"{x:.2g}"
    return f"{x:.2f}"


def histogram(edges: Sequence[float], counts: Sequence[int], *, width: int = 180, height: int = 70,
              title: str = "activation") -> Markup:
    """Bars of a histogram with `len(edges) == len(counts) + 1`; x range labelled under the axis."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram needs len(edges) == len(counts) + 1, got {len(edges)} and {len(counts)}")
    top = max(max(counts, default=0), 1)
    pad_b = 14
    bar_w = width / max(len(counts), 1)
    bars = []
    for i, c in enumerate(counts):
        h = (height - pad_b) * c / top
        bars.append(
            f'<rect x="{i * bar_w:.1f}" y="{height - pad_b - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="#4c78a8"><title>{escape(_fmt(edges[i]))}–{escape(_fmt(edges[i + 1]))}: {int(c)}</title></rect>'
        )
    lo, hi = (edges[0], edges[-1]) if len(edges) else (0.0, 0.0)
    return Markup(
        f'<svg class="plot hist" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        + "".join(bars)
        + f'<line x1="0" y1="{height - pad_b}" x2="{width}" y2="{height - pad_b}" stroke="#555"/>'
        f'<text x="0" y="{height - 2}" font-size="10">{escape(_fmt(lo))}</text>'
        f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{escape(_fmt(hi))}</text></svg>'
    )


def line_plot(x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, width: int = 520,
              height: int = 240, y_label: str = "") -> Markup:
    """One line per series over categorical x positions; None values leave gaps."""
    left, right, top_pad, bottom = 46, 130, 10, 30
    pw, ph = width - left - right, height - top_pad - bottom
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(x_labels), 1)

    def px(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    def py(v: float) -> float:
        return top_pad + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<rect x="{left}" y="{top_pad}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in range(5):
        v = lo + (hi - lo) * t / 4
        parts.append(f'<text x="{left - 4}" y="{py(v) + 3:.1f}" font-size="10" text-anchor="end">{escape(_fmt(v))}</text>')
    for i, lab in enumerate(x_labels):
        parts.append(f'<text x="{px(i):.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">{escape(str(lab))}</text>')
    for j, (name, ys) in enumerate(series.items()):
        colour = PALETTE[j % len(PALETTE)]
        pts = [(px(i), py(v), v) for i, v in enumerate(ys) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts)
            parts.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, v in pts:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(name)}: {escape(_fmt(v))}</title></circle>')
        ly = top_pad + 12 + 14 * j
        parts.append(f'<line x1="{width - right + 8}" y1="{ly - 4}" x2="{width - right + 24}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{width - right + 28}" y="{ly}" font-size="11">{escape(name)}</text>')
    if y_label:
        parts.append(f'<text x="10" y="{top_pad + ph / 2:.1f}" font-size="10" transform="rotate(-90 10 {top_pad + ph / 2:.1f})" text-anchor="middle">{escape(y_label)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 2}" font-size="10" text-anchor="middle">layer</text>')
    return Markup(
        f'<svg class="plot line" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">' + "".join(parts) + "</svg>"
    )


def bars(items: Sequence[tuple[str, float]], *, width: int = 520, bar_h: int = 18, label_w: int = 220) -> Markup:
    """Horizontal bars with their value printed (the extraction funnel)."""
    top = max((v for _, v in items), default=1) or 1
    height = bar_h * len(items) + 4
    parts = []
    for i, (label, v) in enumerate(items):
        y = 2 + i * bar_h
        w = (width - label_w - 50) * v / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" font-size="11" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="#72b7b2"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="11">{escape(_fmt(v) if not float(v).is_integer() else str(int(v)))}</text>'
        )
    return Markup(
        f'<svg class="plot bars" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">' + "".join(parts) + "</svg>"
    )
