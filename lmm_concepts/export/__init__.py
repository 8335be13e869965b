"""Concepts in feature-dashboard layouts: Neuronpedia (`neuronpedia.py`) and SAEDashboard (`saedashboard.py`).

    export_dashboard(explanations, store, format="neuronpedia", out="runs/dog/np", model=model)

writes the format's file(s) and a sidecar `lmm_concepts.json`: what was exported (explanations, store, hook, lens),
each field's source (the writer's `FIELDS`), and, per concept, its top samples' ids, captions and images (inlined
as PNG thumbnails or referenced by path), which neither layout has a place for. What every field holds is computed
once in `features.py`, with the full dictionary (SAEDashboard's feature masking is wrong for lasso codes: see there).

Files are JSON with "<", ">" and "&" written as \\u escapes: the same strings once parsed, and a caption holding
HTML or a script stays inert in the file, in a page that inlines it, and in the viewers.
"""

from typing import TYPE_CHECKING

from lmm_concepts._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: `export --help` imports the command's module only
    from lmm_concepts.export.dashboard import FORMATS, export_dashboard, safe_json
    from lmm_concepts.export.features import ConceptFeature, FeatureSet, TopSample, concept_features

__getattr__, __dir__ = lazy_exports(__name__, __file__, globals())

__all__ = ["ConceptFeature", "FORMATS", "FeatureSet", "TopSample", "concept_features", "export_dashboard", "safe_json"]
