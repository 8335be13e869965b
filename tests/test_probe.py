"""The linear-probe ceiling: scikit-learn's logistic regression objective, recovery's values and AUROC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmm_concepts.metrics.probe import fit_logistic, probe_recovery


def test_logistic_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression  # a dev dependency

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = X @ rng.normal(size=6) + 0.8 * rng.normal(size=200) > 0.3
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(X, y)
    w, b = fit_logistic(torch.from_numpy(X), torch.from_numpy(y), C=0.5)
    assert w.numpy() == pytest.approx(ref.coef_[0], abs=1e-5)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_probe_finds_a_value_no_single_axis_holds():
    # colour=red is the sign of x0 + x1 - x2: no coordinate separates it alone, a linear probe does
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(400, 5))
    red = Z[:, 0] + Z[:, 1] - Z[:, 2] > 0
    attrs = [{"color": "red" if r else "blue", "size": "large"} for r in red]
    res = probe_recovery(Z[:300], attrs[:300], Z[300:], attrs[300:])
    by_value = {(v.attribute, v.value): v for v in res.values}
    assert by_value["color", "red"].test_auroc > 0.98 and by_value["color", "blue"].test_auroc > 0.98
    assert (
        by_value["size", "large"].test_auroc is None
        and "every train sample" in by_value["size", "large"].note
    )
    assert res.mean_test_auroc == pytest.approx(
        np.mean([by_value["color", c].test_auroc for c in ("red", "blue")])
    )
    assert res.by_attribute() == {"color": pytest.approx(res.mean_test_auroc)}


def test_probe_refuses_mismatched_inputs():
    Z = np.zeros((4, 3))
    attrs = [{"color": "red"}, {"color": "blue"}] * 2
    with pytest.raises(ValueError, match="one record per row"):
        probe_recovery(Z, attrs[:3], Z, attrs)
    with pytest.raises(ValueError, match="same layer"):
        probe_recovery(Z, attrs, np.zeros((4, 2)), attrs)
    with pytest.raises(ValueError, match="C .* must be > 0"):
        fit_logistic(torch.zeros(4, 3), torch.tensor([True, False, True, False]), C=0)
