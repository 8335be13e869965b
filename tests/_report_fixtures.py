"""A small hand-made report: two methods, three concepts, real PNG thumbnails, hostile strings."""

from __future__ import annotations

from PIL import Image

from lmm_concepts.metrics.recovery import concept_recovery
from lmm_concepts.report import (
    CaptionPanel,
    ConceptPanel,
    ImagePanel,
    MethodPanels,
    Panels,
    Word,
    histogram,
    thumbnail_b64,
)

EVIL = '<script>window.__pwned = 1</script>"><img src=x onerror="window.__pwned=2">'


def make_report_inputs():
    colours = {"a": (220, 30, 30), "b": (30, 30, 220), "c": (30, 200, 30), "evil": (200, 200, 0)}
    images = {k: thumbnail_b64(Image.new("RGB", (32, 32), c)) for k, c in colours.items()}
    train = [{"colour": "red"}, {"colour": "blue"}, {"colour": "green"}, {"colour": EVIL}]
    V = [[1.0, 0.0, 0.1], [0.0, 1.0, 0.2], [0.1, 0.2, 1.0], [0.5, 0.5, 0.5]]
    rec = concept_recovery(V, train, V, train, concept_words=[["red"], ["blue"], [EVIL]]).to_dict()
    methods = {}
    panels = []
    for name in ["semi_nmf", "pca"]:
        methods[name] = {"recovery_auroc": rec["mean_test_auroc"], "word_hit_rate": rec["word_hit_rate"],
                         "overlap": 0.1 if name == "semi_nmf" else 0.05, "clipscore_top1": 0.6,
                         "clipscore_top3": None, "recovery": rec}
        concepts = []
        for k, word in enumerate(["red", "blue", EVIL]):
            edges, counts = histogram([0.0, 0.1, 0.5, 0.9, 1.0, k], bins=5)
            concepts.append(ConceptPanel(k, [Word(word, 3.5), Word("thing", 1.25)], ["a", "b", "evil"],
                                         [1.0, 0.5, 0.25], edges, counts, recovers=[f"colour={word}"]))
        caption = CaptionPanel("evil", ["<image ×4>", "a", EVIL, "\n", "red"], ["visual", "prompt", "generated",
                               "generated", "generated"], [[0.1, 0.0, 2.0], [0.0, 0.0, 0.0], [1.0, -0.5, 0.2],
                                                            [0.0, 0.3, 0.0], [0.9, 0.0, 0.1]], position=2)
        panels.append(MethodPanels(name, concepts, [ImagePanel("evil", caption=EVIL, generated=EVIL,
                                                               top=[(2, 0.9), (0, 0.5), (1, 0.1)])], [caption]))
    results = {
        "word": "circle", "layer": "final", "model": "toy", "n_train": 4, "n_test": 4,
        "methods": methods,
        "findings": [{"claim": "PCA has the lowest overlap", "holds": True, "detail": EVIL},
                     {"claim": "something unmeasured", "holds": None, "detail": ""}],
        "sweep": {"layers": [0, 1, "final"], "series": {"semi_nmf overlap": [0.2, None, 0.1], EVIL: [0.3, 0.2, 0.1]},
                  "y_label": "overlap"},
        "funnel": {"train": [["images", 10], ["word in ground truth", 7], [EVIL, 5]]},
    }
    return results, Panels(methods=panels, images=images)
