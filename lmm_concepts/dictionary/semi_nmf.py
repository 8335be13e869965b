"""Semi-NMF: signed concept vectors, non-negative codes, an L1 penalty — the paper's dictionary learner.

Notation (docs/design.md):
    Z      [n, d]   token representations, one sample per row — signed
    V      [n, K]   concept activations (codes) — NON-NEGATIVE
    W_dec  [K, d]   concept vectors u_k as rows — SIGNED, each ‖u_k‖₂ <= 1

Objective (exactly scikit-learn's `DictionaryLearning(positive_code=True, alpha=l1)`):

    f(V, W_dec) = ½‖Z − V·W_dec‖²_F + l1·ΣV,    V >= 0,  ‖u_k‖₂ <= 1

`l1` = scikit-learn's `alpha` = SPAMS's `lambda1`; the paper writes ‖Z − VU‖² + λ‖V‖₁, so its λ = 2·l1.
`l1` has the units of Z (Z → c·Z with l1 → c·l1 scales f by c² and leaves W_dec unchanged): a number is used as
it is; "rms:0.1" or "active:8" set it from the training data (`l1_rule.py`), and the fit keeps the value it used.

Solver: alternating minimisation, full batch, every step a GEMM on the Gram matrix:
  codes       V ← argmin_{V>=0} f(·, W_dec)   warm-started non-negative lasso (`lasso.nonneg_lasso_gram`)
  dictionary  the exact minimiser over ‖u_k‖ <= 1 from A = VᵀV, B = ZᵀV, by Newton's method on its Lagrange
              dual (`lasso.solve_dictionary`); never-used atoms re-seeded from the worst-reconstructed
              samples' residuals
Both steps are exact block minimisations (or never-worse warm starts), so the objective never increases.
The iterations start near the solution: from the same fit on a random subset of the rows (coarse to fine),
or, on less data, after passes of online mini-batch updates (Mairal et al. 2010); most of the descent then
costs a fraction of a full-batch iteration per dictionary move.

Local optima: alternating minimisation stops where two atoms split one concept (cosine ≈ 0.7) or one atom is
barely used while another concept has no atom (measured on planted data: 1-2 of 24 concepts missed on 5 of 8
seeds). After the first iteration and at every plateau the fit proposes a move (`escape.py`): drop the atom whose
removal costs least (codes re-solved without it) for the residual direction that would explain most, when the
second exceeds the first; it keeps the move only if the objective, re-converged, ends lower, and goes on while
moves help. On a good solution no move is predicted and the check costs a fraction of an iteration.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts._progress import FitProgress
from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary, all_finite
from lmm_concepts.dictionary.escape import Proposal, propose_moves
from lmm_concepts.dictionary.l1_rule import L1Penalty, L1Rule, Probe
from lmm_concepts.dictionary.lasso import (
    CD_MAX_CONCEPTS,
    LassoMethod,
    init_kmeanspp,
    init_random,
    init_svd,
    nonneg_lasso,
    nonneg_lasso_gram,
    objective_from_stats,
    reseed_atoms,
    solve_dictionary,
    update_dictionary,
)
from lmm_concepts.dictionary.lasso_grad import lasso_codes
from lmm_concepts.errors import InputError

logger = logging.getLogger(__name__)

Init = Literal["auto", "svd", "kmeans++", "random"]
_INITS = {"svd": init_svd, "kmeans++": init_kmeanspp, "random": init_random}
#: the coarse stage fits at least this many rows (16 per concept above 64 concepts), to this tolerance: its
#: dictionary is only a start
_COARSE_MIN_ROWS = 1024
_COARSE_TOL = 1e-4
#: code sweeps per mini-batch in the warm-up (its dictionary moves on after every batch anyway): FISTA steps above
#: K = 64, coordinate descent sweeps up to it (measured on 5 planted problems of the suite, K = 18-50: 5 sweeps
#: cost 30-50 % of 20 FISTA steps, same objective after the warm-up)
_WARMUP_LASSO_ITER = 20
_WARMUP_CD_SWEEPS = 5
#: a move's trial is rejected after this many iterations without an objective below the one before the move
_TRIAL_MAX_ITER = 20
#: moves are proposed from at most max(this, 16·K) random rows (the trial itself runs on all of them)
_PROPOSAL_ROWS = 1024


@dataclass
class _Path:
    """The kept iterations of one fit: the objective after each and the wall time since `t0`."""

    t0: float
    sq_norm_Z: float
    #: rounding of the objective from the statistics: within this fraction, a rise is noise
    slack: float
    history: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    progress: FitProgress | None = None

    def append(self, objective: float) -> None:
        self.history.append(objective)
        self.seconds.append(time.perf_counter() - self.t0)
        if self.progress is not None:
            self.progress.step()
            self.progress.report(f"iteration {len(self.history)}", objective)


@dataclass
class _State:
    """Where a descent stopped. `W` is the dictionary after the last update and `V` the codes that made it
    (objective f(V, W)); `W_prev`, `C` = Z·W_prevᵀ and `G` = W_prev·W_prevᵀ are what that code step read."""

    W: Tensor
    V: Tensor | None
    objective: float | None
    W_prev: Tensor
    C: Tensor | None
    G: Tensor | None
    reason: Literal["stalled", "max_iter", "rejected"]
    rel: float


class SemiNMF(L1Penalty, ConceptDictionary):
    """Semi-NMF concept dictionary: Z ≈ V·W_dec with V >= 0, ‖u_k‖ <= 1, L1 penalty `l1` on V.

    Args:
        n_concepts: K, the number of concept vectors.
        l1: weight of ΣV (scikit-learn's `alpha`; the paper's λ = 2·l1). The reference code uses 1.0. Or a rule
            that sets it from the training data: "rms:0.1" (0.1 × the rows' RMS norm, the same at any scale) or
            "active:8" (8 active concepts per sample on average; a few small fits to find it). After `fit`, `l1`
            (and `l1_`) is the absolute value used, `l1_rule` the rule; a saved dictionary keeps both.
        max_iter: most kept alternating iterations (code step + dictionary step); a move's rejected trial adds at
            most `_TRIAL_MAX_ITER` (20) more.
        tol: stop when one iteration lowers the objective by less than `tol` times its value.
        init: start for W_dec: "svd" (top singular vectors, each signed towards the data), "kmeans++",
            "random" (random samples), "auto" (random samples before a warm-up, as online learners start, else
            svd: measured on the benchmark's planted data, K = 20 and 256, the svd start made the warm-up's
            fit slower and no better), or a tensor [K', d] (K' <= K; the rest is filled by residual seeding).
        seed: seeds every random choice (start, warm-up order, re-seeding); same seed, same result.
        device, dtype: where and in which precision to fit (defaults: the data's device, float32).
        code_iter: most inner sweeps of the code solver per iteration (warm-started, so a few suffice);
            default 5 for K <= 64, else 3.
        dict_sweeps: block-coordinate sweeps over the atoms of the dictionary step, in the rare case its exact
            (dual Newton) solve fails; default 3 for K <= 64, else 2.
        lasso_method: "auto", "cd", "fista" or "active_set" (see `lasso.nonneg_lasso`).
        n_reseed: moves out of local optima (module docstring) that may fail: after this many trials that did not
            lower the objective, no more are tried; moves that help do not count. 0 turns moves off.
        reseed_tol: "plateau": one iteration lowered the objective by less than this fraction (looser than `tol`:
            near a split optimum the objective creeps down for many iterations before `tol` would hold). Moves
            are proposed after the first iteration (unless the coarse stage made the start) and at plateaus.
        warmup_epochs, warmup_batch: passes of online mini-batch learning (Mairal et al. 2010) with batches of
            `warmup_batch` samples before the full-batch iterations, which then start near the solution. Skipped
            for fewer than 4 batches of data and when the start is a given dictionary. 0 turns it off.
        coarse_rows: on data of at least 4x this many rows, first fit (the same way, to a tolerance of 1e-4) a
            random subset of this many rows and start the full-batch iterations from its dictionary instead of
            warming up: most of the way then costs iterations on a fraction of the data, and so do the re-seed
            trials, most of which the coarse stage makes (at plateaus of a relative decrease of 1e-3).
            Default max(1024, 16·K); 0 turns it off. (Planted K = 20, n = 5,000, d = 768, mean of 5 data sets:
            0.123 s -> 0.067 s, same objectives.)
        encode_max_iter, encode_tol: the code solver's budget in `encode`.
        progress: a tqdm bar of the iterations and their objective (None: the process default, off in the library
            and on under the `lmm-concepts` command; `lmm_concepts._progress`). Every iteration is logged too
            (logger `lmm_concepts.dictionary.semi_nmf`: INFO at start, end and every 30 s, DEBUG otherwise).

    After `fit`: `W_dec` [K, d], `history_` (objective after every kept iteration: a move's trial enters it once
    below the objective before the move, a rejected trial never), `history_seconds_` (wall time since the start
    of `fit` at each of those points, trials included), `stop_reason_` (with the moves kept and tried), `n_iter_`,
    `objective_` (= history_[-1]), `l1_`.
    """

    architecture = "semi_nmf"
    signed_codes = False
    max_atom_norm = 1.0

    def __init__(
        self,
        n_concepts: int,
        l1: float | str | L1Rule = 1.0,
        *,
        max_iter: int = 1000,
        tol: float = 1e-6,
        init: Init | Tensor = "auto",
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        code_iter: int | None = None,
        dict_sweeps: int | None = None,
        lasso_method: LassoMethod = "auto",
        n_reseed: int = 5,
        reseed_tol: float = 1e-4,
        warmup_epochs: float = 2.0,
        warmup_batch: int = 256,
        coarse_rows: int | None = None,
        encode_max_iter: int = 1000,
        encode_tol: float = 1e-5,
        progress: bool | None = None,
    ):
        super().__init__(n_concepts, device=device, dtype=dtype)
        self._init_l1(l1)
        self._progress = progress  # not a saved parameter (get_params skips it): it changes nothing fitted
        if isinstance(init, str) and init not in (*_INITS, "auto"):
            raise InputError(f"init must be 'auto', one of {sorted(_INITS)} or a tensor [K, d], got {init!r}")
        # K-space work (code sweeps) is cheap next to the n·d·K products at small K, so small dictionaries do more
        # of it per iteration. Measured on the benchmark's planted data, d = 768 (with block-coordinate dictionary
        # steps, before the exact one): K = 20 from an SVD start converged in 13 iterations with (10, 5) code and
        # dictionary sweeps instead of 20 with (3, 1); from the coarse stage's start (5, 3) is 13% faster than
        # (10, 5) (mean over 5 data sets); at K = 256 after the warm-up, 2 FISTA steps cost more iterations than 3
        # and 5 cost more time.
        small = n_concepts <= CD_MAX_CONCEPTS
        code_iter = code_iter if code_iter is not None else (5 if small else 3)
        dict_sweeps = dict_sweeps if dict_sweeps is not None else (3 if small else 2)
        for name, value in [("max_iter", max_iter), ("code_iter", code_iter), ("dict_sweeps", dict_sweeps)]:
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(warmup_batch, int) or warmup_batch < 1:
            raise InputError(f"warmup_batch must be a positive integer, got {warmup_batch!r}")
        for name, value in [("tol", tol), ("reseed_tol", reseed_tol), ("warmup_epochs", warmup_epochs)]:
            if not value >= 0:
                raise InputError(f"{name} must be >= 0, got {value!r}")
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.seed = seed
        self.code_iter = code_iter
        self.dict_sweeps = dict_sweeps
        self.lasso_method: LassoMethod = lasso_method
        self.n_reseed = n_reseed
        self.reseed_tol = reseed_tol
        self.warmup_epochs = warmup_epochs
        self.warmup_batch = warmup_batch
        self.coarse_rows = coarse_rows
        self.encode_max_iter = encode_max_iter
        self.encode_tol = encode_tol
        self.history_: list[float] = []
        self.history_seconds_: list[float] = []
        self.stop_reason_: str | None = None
        self.n_iter_ = 0

    # ----------------------------------------------------------------- fit
    def fit(self, Z: ArrayLike, *, init_W_dec: Tensor | None = None) -> SemiNMF:
        """Minimise the objective over V >= 0 and ‖u_k‖ <= 1; returns self.

        `init_W_dec` [K', d] (K' <= K) warm-starts from a previous solution, e.g. the K-concept dictionary
        when fitting K + 1 concepts (the extra atoms start at the worst-reconstructed samples' residuals).
        """
        Z = self._as_tensor(Z, fitting=True)
        self._fit_l1(Z, semi_nmf_probe(self.n_concepts, self.seed), seed=self.seed)
        self._fit(Z, init_W_dec)
        return self

    def fit_transform(self, Z: ArrayLike, *, init_W_dec: Tensor | None = None) -> Float[Tensor, "n n_concepts"]:
        """`fit(Z)` and the codes of Z under the final dictionary, the same as `encode(Z)` but warm-started
        from the last iteration's codes (scikit-learn's `fit_transform`)."""
        Z = self._as_tensor(Z, fitting=True)
        self._fit_l1(Z, semi_nmf_probe(self.n_concepts, self.seed), seed=self.seed)
        V = self._fit(Z, init_W_dec)
        return nonneg_lasso(
            Z, self.W_dec, self.l1, V0=V, max_iter=self.encode_max_iter, tol=self.encode_tol, method=self.lasso_method
        )

    def _fit(
        self, Z: Float[Tensor, "n d"], init_W_dec: Tensor | None, stage: str = ""
    ) -> Float[Tensor, "n K"]:
        """The fit proper; sets W_dec and the history, returns the codes of the last code step."""
        what = f"SemiNMF K={self.n_concepts} on {Z.shape[0]}x{Z.shape[1]}{stage}"
        with FitProgress(logger, what, progress=self._progress) as progress:
            V = self._fit_path(Z, init_W_dec, progress)
            progress.close(f"{self.stop_reason_}; objective {self.history_[-1]:.6g} after {self.n_iter_} iterations")
        return V

    def _fit_path(
        self, Z: Float[Tensor, "n d"], init_W_dec: Tensor | None, progress: FitProgress
    ) -> Float[Tensor, "n K"]:
        generator = torch.Generator().manual_seed(self.seed)
        path = _Path(time.perf_counter(), float((Z * Z).sum(dtype=torch.float64)), 64 * torch.finfo(Z.dtype).eps)
        W, V, coarse_start = self._begin(Z, init_W_dec if init_W_dec is not None else self.init, generator)
        path.progress = progress  # after the start: the coarse stage reports as a fit of its own
        trials = self.n_reseed > 0
        # one iteration, then a first proposal (moves are cheapest before the objective creeps into a split
        # optimum); from the coarse stage's start, which made its own moves, to the first plateau; to
        # convergence when no move may be tried
        state = self._descend(Z, path, W, V, cold=not coarse_start, stop_rel=self.reseed_tol if trials else self.tol,
                              max_steps=1 if trials and not coarse_start else None)
        tried = kept = 0
        excluded: set[int] = set()
        proposal: Proposal | None = None
        while trials and tried - kept < self.n_reseed and state.reason == "stalled":
            if proposal is None:
                proposal = self._propose(Z, state, generator)
            move = proposal.best(excluded)
            if move is not None:
                tried += 1
                W_try = state.W.clone()
                W_try[move.k] = move.u.to(W_try)
                V_try = state.V.clone()
                V_try[:, move.k] = 0
                result = self._descend(
                    Z, path, W_try, V_try, cold=False, stop_rel=self.reseed_tol, target=state.objective
                )
                if result.reason == "rejected":
                    excluded.add(move.k)  # next: the next cheapest atom
                else:
                    kept += 1
                    state, proposal = result, None
                    excluded.clear()
                continue
            if state.rel <= self.reseed_tol:  # a plateau where no move predicts a gain: done
                break
            state, proposal = self._descend(Z, path, state.W, state.V, cold=False, stop_rel=self.reseed_tol), None
            excluded.clear()
        if state.reason == "stalled" and state.rel > self.tol:  # converge the rest of the way
            state = self._descend(Z, path, state.W, state.V, cold=False, stop_rel=self.tol)
        if state.reason == "max_iter":
            stop_reason = f"max_iter={self.max_iter} reached"
        else:
            stop_reason = f"converged: relative decrease {state.rel:.2e} <= tol={self.tol:g}"
        if trials:
            stop_reason += (
                f"; {kept} of {tried} re-seeding move{'s' if tried != 1 else ''} kept"
                if tried
                else "; no re-seeding move predicted a lower objective"
            )
        self.W_dec = state.W.contiguous()
        self.history_ = path.history
        # the objective is ½‖Z‖² − ⟨W_decᵀ, B⟩ + ½⟨G, A⟩ + l1·ΣV from float32 statistics: its rounding is a fraction
        # of ½‖Z‖², however small the objective itself
        self.history_rounding_ = path.slack * 0.5 * path.sq_norm_Z
        self.history_seconds_ = path.seconds
        self.n_iter_ = len(path.history)
        self.stop_reason_ = stop_reason
        return state.V

    def _descend(
        self,
        Z: Float[Tensor, "n d"],
        path: _Path,
        W: Float[Tensor, "K d"],
        V: Float[Tensor, "n K"] | None,
        *,
        cold: bool,
        stop_rel: float,
        target: float | None = None,
        max_steps: int | None = None,
    ) -> _State:
        """Alternating code and dictionary steps from (W, V) until one lowers the objective by at most
        `stop_rel` of its value ("stalled") or the path holds `max_iter` iterations ("max_iter").

        With a `target` (a move's trial) iterations are kept on the path only once the objective is below it;
        a trial that stalls or runs `_TRIAL_MAX_ITER` iterations above it ends "rejected".
        """
        small = self.n_concepts <= CD_MAX_CONCEPTS and self.lasso_method in ("auto", "cd")
        W_acc, V_acc = W, V  # the last kept (or trial) dictionary, after its update, and the codes that made it
        W_prev, C, G = W, None, None
        prev = path.history[-1] if path.history and target is None else None
        n_trial = n_kept = 0

        def step(C, G, V0, safeguard):
            """Code step from V0, then dictionary step: (V, A, B, W_new, dead, objective)."""
            V = nonneg_lasso_gram(
                C,
                G,
                self.l1,
                V0=V0,
                # a cold first code step from a rough start is solved to the encode tolerance; warm-started ones,
                # and the first one from the coarse stage's dictionary, are short
                max_iter=self.encode_max_iter if V0 is None and cold else self.code_iter,
                tol=self.encode_tol,
                method=self.lasso_method,
                safeguard=safeguard,
            )
            A = V.T @ V
            B = (V.T @ Z).T  # [d, K] as a view of VᵀZ [K, d]: the faster GEMM, and the rows the update reads
            W_new, dead = solve_dictionary(W, A, B, fallback_sweeps=self.dict_sweeps)
            obj = objective_from_stats(W_new, A, B, V.sum(dtype=torch.float64), path.sq_norm_Z, self.l1)
            return V, A, B, W_new, dead, obj

        while len(path.history) < self.max_iter:
            G = W @ W.T
            # coordinate descent works on Cᵀ [K, n]: made directly by the GEMM, the transpose is free
            C = (W @ Z.T).T if small else Z @ W.T
            # the gradient methods' per-sample guard against a worse start costs a GEMM; a plain step checks the
            # objective instead and is redone with the guard in the rare case it rose
            plain = prev is not None
            V, A, B, W_new, dead, obj = step(C, G, V, safeguard=not plain)
            if plain and obj > prev + path.slack * abs(prev):
                V, A, B, W_new, dead, obj = step(C, G, V_acc, safeguard=True)
            if dead.any():  # never-used atoms do not enter the objective: re-seeding them leaves it unchanged
                W_new = reseed_atoms(W_new, dead, self._worst_residuals(Z, V, W, C, G, int(dead.sum())))
            rel = (prev - obj) / max(abs(prev), 1e-300) if prev is not None else math.inf
            if target is not None:
                if obj < target - self.tol * abs(target):  # the move paid off: from here on, the path
                    rel, target = (path.history[-1] - obj) / max(abs(path.history[-1]), 1e-300), None
                else:
                    n_trial += 1
                    if n_trial >= _TRIAL_MAX_ITER or rel <= stop_rel:
                        return _State(W_acc, V_acc, obj, W, C, G, "rejected", rel)
            if target is None:
                path.append(obj)
            W_prev, W, W_acc, V_acc, prev = W, W_new, W_new, V, obj
            n_kept += target is None
            if rel <= stop_rel or (max_steps is not None and n_kept >= max_steps):
                return _State(W_acc, V_acc, obj, W_prev, C, G, "stalled", rel)
        return _State(W_acc, V_acc, prev, W_prev, C, G, "rejected" if target is not None else "max_iter", math.inf)

    def _propose(self, Z: Float[Tensor, "n d"], state: _State, generator: torch.Generator) -> Proposal:
        """Candidate moves out of the stalled state, measured on at most `_PROPOSAL_ROWS` random rows."""
        n, m = Z.shape[0], max(_PROPOSAL_ROWS, 16 * self.n_concepts)
        rows = torch.randperm(n, generator=generator)[:m].to(Z.device) if n > m else None
        pick = (lambda X: X[rows]) if rows is not None else (lambda X: X)
        return propose_moves(pick(Z), pick(state.C), state.G, pick(state.V), state.W_prev, self.l1)

    def _begin(
        self, Z: Float[Tensor, "n d"], init: Init | Tensor, generator: torch.Generator
    ) -> tuple[Float[Tensor, "K d"], Float[Tensor, "n K"] | None, bool]:
        """Where the full-batch iterations start: (W_dec, codes or None, whether the coarse stage made it)."""
        n = Z.shape[0]
        coarse_rows = self.coarse_rows if self.coarse_rows is not None else max(_COARSE_MIN_ROWS, 16 * self.n_concepts)
        if isinstance(init, str) and coarse_rows > 0 and n >= 4 * coarse_rows:
            # coarse to fine: the same fit on a random subset, then full-batch iterations from its dictionary
            idx = torch.randperm(n, generator=generator)[:coarse_rows].to(Z.device)
            coarse_tol = max(self.tol, _COARSE_TOL)
            # re-seed trials (each an extra iteration) are cheap here: the coarse stage makes them, the full data
            # only converges
            params = {**self.get_params(), "tol": coarse_tol, "reseed_tol": max(self.reseed_tol, 10 * coarse_tol)}
            coarse = SemiNMF(**params, device=Z.device, dtype=Z.dtype, progress=self._progress)
            coarse._fit(Z[idx], None, stage=" (coarse stage)")
            return coarse.W_dec, None, True
        # a given start is a solution to refine: the noisy online steps could only move it to another basin
        warm = isinstance(init, str) and self.warmup_epochs > 0 and n >= 4 * self.warmup_batch
        if isinstance(init, str) and init == "auto":
            init = "random" if warm else "svd"
        W = self._start(Z, init, generator)
        if warm:
            return *self._warmup(Z, W, generator), False
        return W, None, False

    def _warmup(self, Z: Float[Tensor, "n d"], W: Float[Tensor, "K d"], generator: torch.Generator):
        """`warmup_epochs` passes of online (mini-batch) dictionary learning (Mairal et al. 2010) from W.

        A pass costs about one full-batch iteration in GEMMs but moves the dictionary once per mini-batch, so it
        takes the fit most of the way from the start; the full-batch iterations then converge exactly. Returns
        the dictionary and every sample's codes from its last mini-batch (the first code step's warm start).
        """
        n, K = Z.shape[0], W.shape[0]
        batch = self.warmup_batch
        steps_per_epoch = -(-n // batch)
        n_steps = max(1, round(self.warmup_epochs * steps_per_epoch))
        A = Z.new_zeros(K, K)
        Bt = Z.new_zeros(K, Z.shape[1])
        V_all = Z.new_zeros(n, K)
        # statistics forget their first steps (codes under the start) and remember about half a pass
        memory = max(steps_per_epoch / 2, 1.0)
        order = torch.empty(0, dtype=torch.long)
        for t in range(n_steps):
            j = (t % steps_per_epoch) * batch
            if j == 0:
                order = torch.randperm(n, generator=generator).to(Z.device)
            idx = order[j : j + batch]
            Zb = Z[idx]
            if K <= CD_MAX_CONCEPTS:
                V = nonneg_lasso_gram((W @ Zb.T).T, W @ W.T, self.l1, max_iter=_WARMUP_CD_SWEEPS, tol=1e-3, method="cd")
            else:
                V = nonneg_lasso_gram(Zb @ W.T, W @ W.T, self.l1, max_iter=_WARMUP_LASSO_ITER, tol=1e-3, method="fista")
            V_all[idx] = V
            beta = min(t / (t + 1), 1 - 1 / memory)
            A.mul_(beta).add_(V.T @ V)
            Bt.mul_(beta).add_(V.T @ Zb)
            W, _ = update_dictionary(W, A, Bt.T)
        return W, V_all

    @staticmethod
    def _rel_decrease(history: list[float]) -> float:
        return (history[-2] - history[-1]) / max(abs(history[-2]), 1e-300)

    def _start(self, Z: Tensor, init: Init | Tensor, generator: torch.Generator) -> Float[Tensor, "K d"]:
        """The starting dictionary [K, d], rows of norm <= 1."""
        K, d = self.n_concepts, Z.shape[1]
        if isinstance(init, str):
            return _INITS[init](Z, K, generator=generator).to(Z)
        W0 = torch.as_tensor(init).to(Z)
        if W0.ndim != 2 or W0.shape[1] != d or W0.shape[0] > K:
            raise InputError(f"an initial W_dec must be [K' <= {K}, d={d}]; got {tuple(W0.shape)}")
        if not all_finite(W0):
            raise InputError("the initial W_dec holds NaN or inf")
        W0 = W0 / torch.linalg.vector_norm(W0, dim=1, keepdim=True).clamp(min=1.0)
        if W0.shape[0] == K:
            return W0.contiguous()
        # extra atoms: residuals of the samples the given atoms reconstruct worst
        G, C = W0 @ W0.T, Z @ W0.T
        V = nonneg_lasso_gram(C, G, self.l1, max_iter=self.encode_max_iter, tol=self.encode_tol)
        new = self._worst_residuals(Z, V, W0, C, G, K - W0.shape[0])
        n_extra = K - W0.shape[0]
        extra = reseed_atoms(
            Z.new_zeros(n_extra, d), torch.ones(n_extra, dtype=torch.bool, device=Z.device), new
        )
        return torch.cat([W0, extra]).contiguous()

    @staticmethod
    def _worst_residuals(Z: Tensor, V: Tensor, W: Tensor, C: Tensor, G: Tensor, m: int) -> Tensor:
        """Residual rows z_i − v_i·W of the m samples with the largest reconstruction error."""
        err = (Z * Z).sum(1) - 2 * (C * V).sum(1) + ((V @ G) * V).sum(1)
        idx = torch.topk(err, min(m, Z.shape[0])).indices
        return Z[idx] - V[idx] @ W

    def _rescale(self, c: float) -> None:
        if not isinstance(self.l1, str):  # a rule not yet resolved has no units
            self.l1 = self.l1 * c
        self.history_ = [h * c * c for h in self.history_]
        if hasattr(self, "history_rounding_"):
            self.history_rounding_ *= c * c

    # ----------------------------------------------------------------- inference
    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        """Codes V = argmin_{V>=0} ½‖Z − V·W_dec‖² + l1·ΣV for new data Z [n, d]; differentiable with respect to a
        Z that requires a gradient (implicit differentiation on each sample's support, `lasso_grad.py`)."""
        Z = self._as_tensor(Z, fitting=False)
        return lasso_codes(
            Z,
            self.W_dec,
            self.l1,
            max_iter=self.encode_max_iter,
            tol=self.encode_tol,
            method=self.lasso_method,
        )

    def objective(self, Z: ArrayLike) -> float:
        """½‖Z − V·W_dec‖²_F + l1·ΣV at the codes V = encode(Z) (float64 accumulation)."""
        Z = self._as_tensor(Z, fitting=False)
        V = self.encode(Z).double()
        R = Z.double() - V @ self.W_dec.double()  # float64: squares of data of extreme scale stay finite
        return float(0.5 * (R * R).sum() + self.l1 * V.sum())

    @property
    def objective_(self) -> float:
        """The objective after the last fit iteration."""
        if not self.history_:
            raise RuntimeError("SemiNMF is not fitted yet: call .fit(Z) first")
        return self.history_[-1]

    def extra_repr(self) -> str:
        return f"n_concepts={self.n_concepts}, l1={self.l1:g}, fitted={self.is_fitted}"


def semi_nmf_probe(n_concepts: int, seed: int = 0) -> Probe:
    """The fit an "active:k" l1 rule measures sparsity with: a SemiNMF with K concepts at the probed l1, to a loose
    tolerance (1e-4), each probe starting from the previous probe's dictionary."""
    last: dict[str, Tensor] = {}

    def codes(Z: Float[Tensor, "m d"], l1: float) -> Float[Tensor, "m K"]:
        model = SemiNMF(n_concepts, l1=l1, tol=1e-4, init=last.get("W_dec", "auto"), seed=seed, device=Z.device,
                        dtype=Z.dtype, progress=False)  # no bar per probe: the fit that asked reports
        V = model.fit_transform(Z)
        last["W_dec"] = model.W_dec
        return V

    return codes


__all__ = ["SemiNMF", "semi_nmf_probe"]
