"""Render `results.json` + `panels.json` into one self-contained HTML page.

Templates ship as package data (`report/templates/`) and are rendered by Jinja2 with autoescaping on, so
every string that came from a tokenizer or a dataset (words, captions, ids, attribute values) is
HTML-escaped. Images are inlined as base64 PNG and plots as inline SVG: the page loads nothing from anywhere.
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from markupsafe import Markup

import lmm_concepts.report.svg as svg
from lmm_concepts._io import read_json, write_json, write_text
from lmm_concepts._version import __version__
from lmm_concepts.dictionary.registry import method_label
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.report.panels import CaptionPanel, MethodPanels, Panels

#: (key in results["methods"][name], column label, tooltip, higher is better)
METRIC_COLUMNS = [
    ("recovery_auroc", "recovery AUROC ↑", "mean held-out AUROC of the best train concept per attribute value", True),
    ("word_hit_rate", "words name the value ↑", "fraction of values whose chosen concept's words contain the value's word", True),
    ("overlap", "overlap ↓", "mean over concept pairs of |T_i ∩ T_j| / |T_i|", False),
    ("clipscore_top1", "CLIPScore top-1 ↑", "2.5·max(cos(image, words of top concept), 0), test mean", True),
    ("clipscore_top3", "CLIPScore top-3 ↑", "mean over the top-3 concepts", True),
    ("bertscore_top1", "BERTScore top-1 ↑", "BERTScore F1 of the top concept's words against the image's captions", True),
    ("bertscore_top3", "BERTScore top-3 ↑", "mean over the top-3 concepts", True),
    ("mas_words", "MAS vs words ↑", "CLIPScore of each concept's most activating test images with its words", True),
    ("relative_error", "rel. error ↓", "‖Z − V·W_dec‖ / ‖Z‖ on the test set", False),
    ("l0", "L0", "mean number of active concepts per test sample", None),
    ("faithful_share", "faithful ↑", "share of concepts whose removal lowers their words' relative logits (the "
     "headline effect) more than random directions of the same norm do (mean + 2 std)", True),
]
_TOP_R = re.compile(r"(clip|bert)score_top(\d+)")


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "–" if not math.isfinite(x) else f"{x:.3f}"
    return str(x)


def token_colour(value: float, scale: float) -> str:
    """Background of a token: blue for a positive activation, red for a negative one, strongest (70 % opaque, so the
    text stays readable) at ±`scale`."""
    x = 0.7 * max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    return f"rgba(31,119,180,{x:.2f})" if x >= 0 else f"rgba(214,39,40,{-x:.2f})"


def _caption_view(c: CaptionPanel, scales: list[float]) -> dict[str, Any]:
    """One caption as coloured tokens, by its top concept at the stored token (the page's script recolours them)."""
    stored = c.acts[c.position] if c.acts else []
    top = max(range(len(stored)), key=stored.__getitem__) if stored else 0
    tokens = []
    for t, (text, kind, acts) in enumerate(zip(c.tokens, c.kinds, c.acts, strict=True)):
        ranked = sorted(range(len(acts)), key=lambda k: -abs(acts[k]))[:3]
        tokens.append({
            "text": text.replace("\n", "↵"), "kind": kind, "stored": t == c.position,
            "colour": token_colour(acts[top], scales[top]) if acts else "transparent",
            "title": f"#{top}: {acts[top]:.3f} · strongest: " + ", ".join(f"#{k} {acts[k]:.3f}" for k in ranked)
            if acts else "",
        })  # fmt: skip
    return {"id": c.id, "tokens": tokens, "acts": c.acts, "top": top}


class _MethodView:
    """What the template needs for one method: metrics, concepts with their SVGs, test images, captions."""

    def __init__(self, key: str, metrics: dict[str, Any], panels: MethodPanels | None):
        self.key = key
        self.label = method_label(key)  # the learner's registered label
        self.metrics = metrics
        self.concepts = []
        self._words: dict[int, str] = {}
        self.images = panels.images if panels else []
        concepts = panels.concepts if panels else []
        captions = panels.captions if panels else []
        K = max([len(row) for c in captions for row in c.acts] + [c.index + 1 for c in concepts], default=0)
        # full colour at the concept's largest |activation| over the store; the captions' own when unknown
        self.scales = [max((abs(row[k]) for c in captions for row in c.acts), default=0.0) or 1.0 for k in range(K)]
        for c in concepts:
            if c.max_abs:
                self.scales[c.index] = c.max_abs
        self.captions = [_caption_view(c, self.scales) for c in captions]
        for c in concepts:
            self._words[c.index] = ", ".join(w.word for w in c.words[:5]) or "(no words)"
            self.concepts.append(
                {
                    "index": c.index,
                    "words": c.words,
                    "recovers": c.recovers,
                    "mas_pairs": list(zip(c.mas, c.mas_activations or [math.nan] * len(c.mas), strict=True)),
                    "hist_svg": svg.histogram(c.hist_edges, c.hist_counts) if c.hist_counts else "",
                    "frac_active": c.frac_active,
                }
            )

    def words_of(self, k: int) -> str:
        return self._words.get(k, "")


def _template_env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("lmm_concepts.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _asset(name: str) -> str:
    return resources.files("lmm_concepts.report").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(results: dict[str, Any], panels: Panels, title: str | None = None) -> str:
    """The report page as a string (see the module docstring)."""
    by_name = {m.name: m for m in panels.methods}
    methods = [_MethodView(k, v, by_name.get(k)) for k, v in results.get("methods", {}).items()]
    present = {k for m in methods for k, v in m.metrics.items() if v is not None}
    table = list(METRIC_COLUMNS)
    for key in sorted(present - {k for k, *_ in METRIC_COLUMNS}):  # top-r columns for an r other than 3
        match = _TOP_R.fullmatch(key)
        if match:
            name = "CLIPScore" if match.group(1) == "clip" else "BERTScore"
            table.append((key, f"{name} top-{match.group(2)} ↑", f"mean over the top-{match.group(2)} concepts", True))
    best = {}
    for key, _, _, higher in table:
        vals = [(m.metrics.get(key), m.key) for m in methods if isinstance(m.metrics.get(key), (int, float))]
        vals = [(v, k) for v, k in vals if math.isfinite(v)]
        if vals and higher is not None:
            best[key] = (max if higher else min)(vals)[1]
    columns = [{"key": k, "label": lab, "help": h} for k, lab, h, _ in table if k in present]
    baselines = [(m.label, row, cols) for m in methods for row, cols in (m.metrics.get("baselines") or {}).items()]
    baseline_columns = sorted({c for _, _, cols in baselines for c in cols})

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i, m in enumerate(methods):
        for v in (m.metrics.get("recovery") or {}).get("values", []):
            row = rows.setdefault(
                (v["attribute"], v["value"]),
                {"attribute": v["attribute"], "value": v["value"], "n_train": v["n_train_positive"],
                 "n_test": v["n_test_positive"], "cells": [{"auroc": None, "concept": None, "sign": 1, "word": False, "title": ""}
                                                             for _ in methods]},
            )
            row["cells"][i] = {"auroc": v["test_auroc"], "concept": v["concept"], "sign": v["sign"],
                               "word": bool(v.get("word_in_grounding")), "title": v.get("note", "")}
    probe = results.get("probe") or {}
    for v in probe.get("values", []):
        row = rows.get((v["attribute"], v["value"]))
        if row is not None:
            row["probe"] = v["test_auroc"]
    recovery_rows = [rows[k] for k in sorted(rows)]

    faithfulness = [_faith_row(m) for m in methods if isinstance(m.metrics.get("faithfulness"), dict)]

    sweep = results.get("sweep") or {}
    sweep_svg = (svg.line_plot([str(x) for x in sweep["layers"]], sweep["series"], y_label=sweep.get("y_label", ""))
                 if sweep.get("layers") and sweep.get("series") else "")
    funnels = [(split, svg.bars([(str(lab), float(n)) for lab, n in stages]))
               for split, stages in (results.get("funnel") or {}).items() if stages]

    template = _template_env().get_template("report.html.j2")
    return template.render(
        title=title or f"lmm-concepts report: {results.get('word', '')}",
        results=_Attr(results),
        methods=methods,
        metric_columns=columns,
        best=best,
        recovery_rows=recovery_rows,
        faithfulness=faithfulness,
        probe=probe,
        sweep_svg=sweep_svg,
        funnels=funnels,
        baselines=baselines,
        baseline_columns=baseline_columns,
        images=panels.images,
        fmt=_fmt,
        version=__version__,
        tojson=lambda x: Markup(_json_attr(x)),
        css=Markup(_asset("report.css")),
        js=Markup(_asset("report.js")),
    )


def _faith_row(m: _MethodView) -> dict[str, Any]:
    """One method's faithfulness: the headline and every effect at the measured layer, and the compared layer's."""
    f = m.metrics["faithfulness"]
    compared = m.metrics.get("faithfulness_compared") or {}
    return {"label": m.label, "f": f, "effects": list((f.get("effects") or {}).items()), "compared": compared,
            "compared_effects": list((compared.get("effects") or {}).items())}


def _json_attr(x: Any) -> str:
    """JSON for a single-quoted HTML attribute: <, >, & and ' as \\u escapes (still valid JSON)."""
    text = json.dumps(x, separators=(",", ":"))
    for ch in "<>&'":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


class _Attr(dict):
    """A dict whose keys also read as attributes in templates, with absent keys as None."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        if isinstance(value, dict):
            return _Attr(value)
        if isinstance(value, list):
            return [_Attr(v) if isinstance(v, dict) else v for v in value]
        return value


def write_report(folder: str | os.PathLike, results: dict[str, Any], panels: Panels) -> Path:
    """Save `results.json`, `panels.json` and `report.html` into `folder`; returns the HTML's path."""
    folder = Path(folder)
    write_json(folder / "results.json", results)
    write_json(folder / "panels.json", panels.to_dict(), indent=None)
    return write_text(folder / "report.html", render_html(results, panels))


def rerender(folder: str | os.PathLike) -> Path:
    """Render `folder/report.html` again from the saved `results.json` and `panels.json`."""
    folder = Path(folder)
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise MissingInputError(
            f"{results_path} not found: point `lmm-concepts report` at a folder written by `lmm-concepts demo` "
            "(or by lmm_concepts.report.write_report)"
        )
    results = _read_object(results_path)
    panels_path = folder / "panels.json"
    panels = Panels.from_dict(_read_object(panels_path)) if panels_path.is_file() else Panels()
    return write_text(folder / "report.html", render_html(results, panels))


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object, or an error naming the file and what to do."""
    try:
        obj = read_json(path)
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{path} is not valid JSON ({err}); write it again with `lmm-concepts demo`") from None
    if not isinstance(obj, dict):
        raise InputError(
            f"{path} holds a JSON {type(obj).__name__}, not the object `lmm-concepts demo` writes; point "
            "`lmm-concepts report` at a demo's folder"
        )
    return obj
