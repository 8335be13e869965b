"""How the L1 penalty is chosen: an absolute value, or a value set from the training data by a scale-free rule.

Notation (docs/design.md): Z [n, d] training rows z_i, codes V [n, K] >= 0, dictionary W_dec [K, d] with ‖u_k‖ <= 1,
objective ½‖Z − V·W_dec‖²_F + l1·ΣV (`l1` = scikit-learn's alpha; the paper's λ = 2·l1).

`l1` has the units of the data: Z → c·Z with l1 → c·l1 scales the objective by c² and leaves the dictionary
unchanged (the codes scale by c). So one absolute l1 means a different sparsity on every model: on the toy's
final layer (`ln_final.hook_out`, RMS row norm ≈ 9.5) l1 = 1 leaves 3.9 active concepts of 20 per sample and
l1 = 0.1 leaves 12.7, while a 7B model's rows are an order of magnitude longer. Three rules, written as a spec string or an `L1Rule`:

    "0.5"  or 0.5   L1Rule.absolute(0.5)   l1 = 0.5, as given (scikit-learn's alpha, the paper's λ/2)
    "rms:0.1"       L1Rule.relative(0.1)   l1 = 0.1 · RMS row norm of the training data, √(Σ_i ‖z_i‖² / n):
                                           the same fraction means the same thing at any scale
    "active:8"      L1Rule.active(8)       l1 such that a fit has 8 active (> 0) concepts per sample on average

The rules are resolved once, by `resolve_l1`, on the training data only, at the start of a fit (SemiNMF,
OnlineSemiNMF on its start rows, the sae-lens training SAE on its first batch, `lmm-concepts fit --l1`). The
fitted dictionary keeps the absolute value it used in `l1` (`l1_` after the fit) and the rule in `l1_rule`; its
saved sae-lens config holds both, and loading it back gives a dictionary with the absolute value.

Cost: "rms" is one pass over the rows. "active" fits the learner on at most `max_rows` (4,096) random training rows
for each probed l1 and solves for the target by bracketing in log l1 (regula falsi, Illinois variant) between
l1 = max_i ‖z_i‖, where every code is 0 whatever the dictionary, and 1e-4 of the RMS norm; each probe starts from
the previous probe's dictionary. Typically 5-10 probes: a few small fits, on top of the fit itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.dictionary.lasso import rms_norm
from lmm_concepts.errors import InputError

RuleKind = Literal["absolute", "rms", "active"]
#: codes [m, K] of the rows Z_s [m, d] after fitting them with penalty l1: how "active" measures a probe
Probe = Callable[[Float[Tensor, "m d"], float], Float[Tensor, "m K"]]

_SPEC = re.compile(r"^\s*(?:(rms|active)\s*:\s*)?([-+0-9.eE]+|inf|nan)\s*$")


@dataclass(frozen=True)
class L1Rule:
    """A rule for the L1 penalty; `str(rule)` is its spec ("0.5", "rms:0.1", "active:8"), `L1Rule.parse` reads it."""

    kind: RuleKind
    value: float

    def __post_init__(self):
        if self.kind not in ("absolute", "rms", "active"):
            raise InputError(f"an L1 rule is 'absolute', 'rms' or 'active', got {self.kind!r}")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) or not math.isfinite(self.value):
            raise InputError(f"the {self.kind} l1 rule needs a finite number, got {self.value!r}")
        if self.kind == "absolute" and self.value < 0:
            raise InputError(f"l1 must be a finite number >= 0 (the L1 penalty on the codes), got {self.value!r}")
        if self.kind == "rms" and self.value < 0:
            raise InputError(f"a relative l1 'rms:f' needs a fraction f >= 0 of the rows' RMS norm, got {self.value!r}")
        if self.kind == "active" and self.value <= 0:
            raise InputError(
                f"a target sparsity 'active:k' needs k > 0 active concepts per sample, got {self.value!r}"
            )
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def absolute(cls, l1: float) -> L1Rule:
        """l1 as given."""
        return cls("absolute", l1)

    @classmethod
    def relative(cls, fraction: float) -> L1Rule:
        """l1 = fraction · RMS row norm of the training data."""
        return cls("rms", fraction)

    @classmethod
    def active(cls, k: float) -> L1Rule:
        """l1 such that a fit on the training data has k active concepts per sample on average."""
        return cls("active", k)

    @classmethod
    def parse(cls, spec: float | str | L1Rule) -> L1Rule:
        """A rule from a number (absolute), a spec string ("0.5", "rms:0.1", "active:8") or a rule."""
        if isinstance(spec, L1Rule):
            return spec
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls.absolute(spec)
        if isinstance(spec, str):
            match = _SPEC.match(spec)
            if match:
                try:
                    value = float(match.group(2))
                except ValueError:
                    value = None
                if value is not None:
                    return cls(match.group(1) or "absolute", value)
        raise InputError(
            f"l1 must be a number >= 0, 'rms:<fraction>' (a fraction of the rows' RMS norm) or 'active:<k>' "
            f"(k active concepts per sample on average), got {spec!r}"
        )

    @property
    def is_absolute(self) -> bool:
        return self.kind == "absolute"

    def check_concepts(self, n_concepts: int) -> None:
        """Refuse a target sparsity a K-concept dictionary cannot have."""
        if self.kind == "active" and self.value > n_concepts:
            raise InputError(
                f"l1 rule '{self}' asks for {self.value:g} active concepts per sample, but the dictionary has only "
                f"K={n_concepts}; choose 0 < k <= {n_concepts}"
            )

    def __str__(self) -> str:
        return f"{self.value:g}" if self.is_absolute else f"{self.kind}:{self.value:g}"


def resolve_l1(
    rule: float | str | L1Rule,
    Z: Float[Tensor, "n d"],
    n_concepts: int,
    *,
    probe: Probe | None = None,
    max_rows: int = 4096,
    seed: int = 0,
    rel_tol: float = 0.05,
    max_probes: int = 24,
) -> float:
    """The absolute l1 that `rule` gives on the training rows Z (see the module docstring), or a clear error.

    `probe` (needed by "active") fits the learner on rows at a given l1 and returns their codes; the target is
    met when the mean number of active codes per row is within `rel_tol` of it.
    """
    rule = L1Rule.parse(rule)
    rule.check_concepts(n_concepts)
    if rule.is_absolute:
        return rule.value
    rms = rms_norm(Z)
    if not rms > 0:
        raise InputError(
            f"l1 rule '{rule}' sets l1 relative to the data, but every row of Z is zero: there is no scale to be "
            "relative to; pass an absolute l1"
        )
    if not math.isfinite(rms):
        raise InputError(f"l1 rule '{rule}': the rows' RMS norm is not finite (NaN or inf in Z); repair Z first")
    if rule.kind == "rms":
        return rule.value * rms
    if probe is None:
        raise InputError(f"l1 rule '{rule}' needs a fit to measure sparsity; this learner supports 'rms:' only")
    if Z.shape[0] > max_rows:
        rows = torch.randperm(Z.shape[0], generator=torch.Generator().manual_seed(seed))[:max_rows]
        Z = Z[rows.to(Z.device)]
    target = rule.value

    def active(l1: float) -> float:
        return float((probe(Z, l1) > 0).sum(dim=1, dtype=torch.float64).mean())

    # bracket: at l1 >= max_i ‖z_i‖ every code is 0 (u_k·z_i <= ‖z_i‖ for ‖u_k‖ <= 1)
    hi = float(torch.linalg.vector_norm(Z.double(), dim=1).max()) * (1 + 1e-6)
    lo = 1e-4 * rms
    a_lo = active(lo)
    if a_lo < target * (1 - rel_tol):
        raise InputError(
            f"l1 rule '{rule}' finds no l1 in range: even l1 = {lo:.3g} (1e-4 of the rows' RMS norm) leaves "
            f"{a_lo:.2f} active concepts per sample on this data; ask for fewer active concepts"
        )
    x_lo, f_lo = math.log(lo), a_lo - target
    x_hi, f_hi = math.log(hi), -target  # no code is active at hi
    best = (abs(f_lo), lo)
    side = 0
    for _ in range(max_probes):
        if best[0] <= rel_tol * target:
            return best[1]
        # regula falsi in log l1 (Illinois: halve the stale end's value so the bracket keeps shrinking)
        x = x_hi - f_hi * (x_hi - x_lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (x_lo + x_hi)
        if not x_lo < x < x_hi:
            x = 0.5 * (x_lo + x_hi)
        f = active(math.exp(x)) - target
        best = min(best, (abs(f), math.exp(x)))
        if f > 0:  # too many active: l1 must grow
            x_lo, f_lo = x, f
            if side == -1:
                f_hi /= 2
            side = -1
        else:
            x_hi, f_hi = x, f
            if side == 1:
                f_lo /= 2
            side = 1
    if best[0] <= rel_tol * target:
        return best[1]
    raise InputError(
        f"l1 rule '{rule}' finds no l1 in range: after {max_probes} probes the closest, l1 = {best[1]:.4g}, is "
        f"{best[0]:.2f} active concepts per sample from the target; the sparsity jumps there on this data, "
        "choose another target or an absolute l1"
    )


class L1Penalty:
    """Mixin of the learners with an L1 penalty: `l1` is the absolute penalty in use (until a fit resolves a rule,
    the rule's spec), `l1_rule` the spec of a data-relative rule or None, `l1_` the value a fit used."""

    n_concepts: int
    l1: float | str
    l1_rule: str | None

    def _init_l1(self, l1: float | str | L1Rule) -> None:
        rule = L1Rule.parse(l1)
        rule.check_concepts(self.n_concepts)
        self.l1_rule = None if rule.is_absolute else str(rule)
        self.l1 = rule.value if rule.is_absolute else str(rule)

    def _fit_l1(self, Z: Float[Tensor, "n d"], probe: Probe | None = None, *, seed: int = 0) -> float:
        """Resolve the rule on the training rows Z (a no-op for an absolute l1); returns the absolute l1."""
        if self.l1_rule is not None:
            self.l1 = resolve_l1(self.l1_rule, Z, self.n_concepts, probe=probe, seed=seed)
        return self.l1

    @property
    def l1_(self) -> float:
        """The absolute l1 the last fit used (an absolute `l1` as given)."""
        if isinstance(self.l1, str):
            raise RuntimeError(f"l1 rule '{self.l1_rule}' is resolved on the training data: call .fit(Z) first")
        return self.l1


__all__ = ["L1Penalty", "L1Rule", "Probe", "resolve_l1", "rms_norm"]
