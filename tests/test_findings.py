"""The paper's qualitative claims, read from hand-made metric tables."""

from lmm_concepts.demo.findings import paper_findings


def _by_claim(methods):
    out = paper_findings(methods)
    assert len(out) == 3
    return [f["holds"] for f in out], out


def test_claims_hold_when_the_numbers_say_so():
    methods = {
        "semi_nmf": {"overlap": 0.10, "clipscore_top1": 0.70, "recovery_auroc": 0.95},
        "pca": {"overlap": 0.02, "clipscore_top1": 0.40, "recovery_auroc": 0.80},
        "kmeans": {"overlap": 0.30, "clipscore_top1": 0.72, "recovery_auroc": 0.90},
        "random": {"overlap": 0.20, "clipscore_top1": 0.30, "recovery_auroc": 0.60},
    }
    holds, out = _by_claim(methods)
    # balance ranks: semi_nmf (2 + 2) / 2 = 2, pca (3 + 1) / 2 = 2, kmeans (1 + 4) / 2 = 2.5 -> semi_nmf ties best
    assert holds == [True, True, True]
    assert "Pareto-optimal" in out[1]["detail"]


def test_claims_fail_or_are_unmeasured_plainly():
    methods = {
        "semi_nmf": {"overlap": 0.01, "clipscore_top1": 0.30, "recovery_auroc": 0.85},
        "pca": {"overlap": 0.05, "clipscore_top1": 0.40, "recovery_auroc": None},
        "kmeans": {"overlap": 0.02, "clipscore_top1": 0.90},
        "random": {"overlap": 0.20, "clipscore_top1": 0.30, "recovery_auroc": 0.60},
    }
    holds, out = _by_claim(methods)
    # semi_nmf: clip rank 3, overlap rank 1 -> 2; kmeans: 1 and 2 -> 1.5 -> fails; AUROC 0.85 < 0.9 -> fails
    assert holds == [False, False, False]
    assert "dominated" not in out[1]["detail"]  # kmeans is better on CLIPScore but worse on overlap
    holds, _ = _by_claim({"semi_nmf": {"overlap": 0.1}})
    assert holds == [None, None, None]
