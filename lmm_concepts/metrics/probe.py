"""The ceiling for recovery: how well a *linear probe* on the representations finds each attribute value.

Recovery (`recovery.py`) asks whether one learned concept separates an attribute value; a probe asks whether any
direction of the representation space does. For every attribute value present among the samples, an L2-regularised
logistic regression is trained on the **train** split (features standardised with the train split's mean and
standard deviation) and its score's AUROC measured on the **test** split: the same values, splits and AUROC as
recovery, so a method's recovery reads directly against the probe's.

Objective (scikit-learn's `LogisticRegression(C=C)`, L2 penalty, intercept unpenalised), for one value with labels
y_i ∈ {0, 1} on standardised rows x_i:

    minimise over w, b:   ½‖w‖² + C · Σ_i log(1 + exp(−s_i (w·x_i + b))),   s_i = 2 y_i − 1

solved by L-BFGS in float64 (a strictly convex problem: one optimum, no seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.errors import InputError
from lmm_concepts.metrics.recovery import (
    AttributeRecord,
    RecoveryResult,
    ValueRecovery,
    _as_numpy,
    auroc_columns,
    value_labels,
)


def fit_logistic(
    X: Float[Tensor, "n d"], y: Tensor, C: float = 1.0, max_iter: int = 500, tol: float = 1e-9
) -> tuple[Tensor, float]:
    """(w [d], b) minimising the module docstring's objective on rows X (float64) and boolean labels y."""
    if not C > 0:
        raise InputError(
            f"C (the inverse L2 strength) must be > 0, got {C}; pass a positive C (1.0 by default)"
        )
    X = X.double()
    s = y.double() * 2 - 1
    w = torch.zeros(X.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        margin = s * (X @ w[:-1] + w[-1])
        loss = 0.5 * w[:-1].square().sum() + C * torch.nn.functional.softplus(-margin).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w = w.detach()
    return w[:-1], float(w[-1])


def probe_recovery(
    train_Z: Float[Tensor, "n_train d"] | np.ndarray,
    train_attributes: Sequence[AttributeRecord],
    test_Z: Float[Tensor, "n_test d"] | np.ndarray,
    test_attributes: Sequence[AttributeRecord],
    *,
    C: float = 1.0,
) -> RecoveryResult:
    """A linear probe per attribute value (see the module docstring), as a `RecoveryResult` whose values carry the
    probe's train and test AUROC (`concept` None: the probe is a direction of its own, not a concept)."""
    Ztr, Zte = _as_numpy(train_Z), _as_numpy(test_Z)
    if Ztr.shape[0] != len(train_attributes) or Zte.shape[0] != len(test_attributes):
        raise InputError(
            f"representations and attribute records disagree: train {Ztr.shape[0]} vs {len(train_attributes)}, "
            f"test {Zte.shape[0]} vs {len(test_attributes)}; pass one record per row"
        )
    if Ztr.shape[1] != Zte.shape[1]:
        raise InputError(
            f"train rows have d={Ztr.shape[1]} but test rows d={Zte.shape[1]}: use the same layer"
        )
    mean, std = Ztr.mean(0), Ztr.std(0)
    std[std == 0] = 1.0
    Xtr = torch.from_numpy((Ztr - mean) / std)
    Xte = torch.from_numpy((Zte - mean) / std)
    out = []
    for attr, value, y_tr, y_te in value_labels(train_attributes, test_attributes):
        rec = ValueRecovery(attr, value, None, 1, None, None, int(y_tr.sum()), int(y_te.sum()))
        out.append(rec)
        if not 0 < y_tr.sum() < len(y_tr):
            rec.note = "no train positives" if y_tr.sum() == 0 else "every train sample has this value"
            continue
        w, b = fit_logistic(Xtr, torch.from_numpy(y_tr), C=C)
        rec.train_auroc = float(auroc_columns((Xtr @ w + b).numpy(), y_tr)[0])
        if 0 < y_te.sum() < len(y_te):
            rec.test_auroc = float(auroc_columns((Xte @ w + b).numpy(), y_te)[0])
        else:
            rec.note = (
                "test split has no positives" if y_te.sum() == 0 else "every test sample has this value"
            )
    scored = [v.test_auroc for v in out if v.test_auroc is not None]
    return RecoveryResult(values=out, mean_test_auroc=float(np.mean(scored)) if scored else None)
