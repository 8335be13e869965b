"""`lmm-concepts report <folder>`: the HTML report of a run's outputs, or a saved report re-rendered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simple_parsing import field

from lmm_concepts.models.load import ModelSpec


@dataclass
class ReportConfig:
    """Render report.html from explanations (+ their store, dictionary, evaluation), or re-render a saved report."""

    folder: str = field(positional=True)
    """an explanations folder (`lmm-concepts ground`), a folder of them (one per method, e.g. a demo's
    explanations/), or a folder holding a saved report (results.json + panels.json, e.g. a demo's), re-rendered"""
    out: str = ""
    """output folder for report.html, results.json and panels.json (default: <folder>/report)"""
    store: str = ""
    """the store the explanations were grounded on (default: the one they recorded)"""
    test_store: str = ""
    """store whose first --n_show samples are shown with their top concepts (default: --store)"""
    dictionary: str = ""
    """dictionary folder, for a single explanations folder (default: the one `lmm-concepts ground` recorded)"""
    evaluation: str = ""
    """evaluation folder (`lmm-concepts evaluate`), or a folder of them named like the explanations"""
    n_show: int = 12
    """test images shown with their top-3 concepts"""
    captions: int = 4
    """of those, samples shown with every concept's activation along their caption (reruns the model)"""
    model: ModelSpec = field(default_factory=lambda: ModelSpec(model=""))
    """the model that built the store, for the captions ("" = the toy when the store was made by it, else none)"""


def saved_report(folder: Path) -> bool:
    return (folder / "results.json").is_file() and (folder / "panels.json").is_file() and not (
        folder / "explanations.json").is_file()


def load_model(spec: ModelSpec, store):
    """The model of `spec`; with no --model, the toy when the store's manifest says the toy built it, else None."""
    if spec.model:
        return spec.load()
    config = (getattr(store, "manifest", {}).get("model") or {}).get("config") or {}
    return ModelSpec(model="toy", device=spec.device).load() if config.get("family") == "toy" else None


def report_command(cfg: ReportConfig) -> None:
    from lmm_concepts.report.inputs import as_explanations, open_store
    from lmm_concepts.report.page import make_report
    from lmm_concepts.report.render import rerender

    folder = Path(cfg.folder)
    if saved_report(folder) and not any((cfg.store, cfg.evaluation, cfg.dictionary, cfg.test_store)):
        print(f"wrote {rerender(folder)}")
        return
    expls = as_explanations(folder, cfg.dictionary or None)
    store = open_store(cfg.store or None, expls)
    model = load_model(cfg.model, store) if cfg.captions > 0 else None
    path = make_report(expls, store, cfg.evaluation or None, out=cfg.out or folder / "report",
                  test_store=cfg.test_store or None, model=model, n_captions=cfg.captions, n_show=cfg.n_show)
    print(f"wrote {path}")
