"""Online (mini-batch) Semi-NMF from sufficient statistics, for representations larger than memory.

Notation (docs/design.md): Z [n, d] signed rows, codes V [n, K] >= 0, dictionary W_dec [K, d] with ‖u_k‖₂ <= 1,
objective ½‖Z − V·W_dec‖²_F + l1·ΣV (`l1` = scikit-learn's alpha; the paper's λ = 2·l1).

Mairal et al. (2010), "Online learning for matrix factorization and sparse coding": at step t a mini-batch
Z_t is encoded under the current dictionary (non-negative lasso, `lasso.nonneg_lasso_gram`), its statistics
are folded into running ones with forgetting factor β_t,

    A ← β_t·A + V_tᵀV_t / η_t        [K, K]
    B ← β_t·B + Z_tᵀV_t / η_t        [d, K]

and one block-coordinate sweep (`lasso.update_dictionary`) moves W_dec towards the minimiser of the
surrogate. β_t is Mairal's mini-batch schedule (θ = η·t early, η² + t − η later; β = (θ + 1 − η)/(θ + 1)),
capped so the statistics never remember much more than `memory_epochs` passes over the data: on a
store that fits a few thousand batches the cap never binds, on small data it lets stale codes from the
first epochs fade, which is what brings the online fit to the full-batch objective.

Only A, B and W_dec live in memory (K² + 2·d·K numbers), so the data can be any size. The fit is
data-parallel when a torch.distributed process group is initialised (see `distributed.py`), and it
checkpoints (W_dec, A, B, position) atomically every `checkpoint_every` steps: rerunning the same fit with
the same checkpoint path resumes where the last checkpoint left off and ends with the same dictionary.

GPU: the two data GEMMs (Z·W_decᵀ and ZᵀV) run in `dtype` (bfloat16 allowed); the K×K work and the
statistics stay float32. The loop itself never reads a value back to the host; the only host syncs are
the convergence checks inside `lasso.py`, one per epoch here, and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import safe_open
from torch import Tensor

from lmm_concepts._io import write_safetensors
from lmm_concepts._progress import FitProgress
from lmm_concepts.dictionary.base import ArrayLike, ConceptDictionary, all_finite
from lmm_concepts.dictionary.distributed import Comm, RankFailure
from lmm_concepts.dictionary.l1_rule import L1Penalty, L1Rule
from lmm_concepts.dictionary.lasso import (
    CD_MAX_CONCEPTS,
    data_scale,
    init_kmeanspp,
    init_random,
    init_svd,
    nonneg_lasso,
    nonneg_lasso_gram,
    reseed_atoms,
    update_dictionary,
)
from lmm_concepts.dictionary.semi_nmf import semi_nmf_probe
from lmm_concepts.dictionary.streaming import (
    RowSource,
    Schedule,
    as_row_source,
    iter_batches,
    read_ranges,
    slice_ranges,
)
from lmm_concepts.errors import InputError

logger = logging.getLogger(__name__)

_INITS = {"svd": init_svd, "kmeans++": init_kmeanspp, "random": init_random}


def _converged(history: list[float], tol: float) -> bool:
    """The stopping rule: the last epoch lowered the running objective by at most `tol` of it (relative)."""
    return len(history) >= 2 and history[-2] - history[-1] <= tol * abs(history[-1])


@dataclass
class OnlineConfig:
    """Settings of an online Semi-NMF fit (saved in every checkpoint; a resume must match them)."""

    n_concepts: int
    """K, the number of concepts."""
    l1: float | str = 1.0
    """L1 penalty on the codes (scikit-learn's alpha; the paper's λ = 2·l1), or a rule that sets it from the start
    rows: "rms:0.1" (a fraction of their RMS norm), "active:8" (active concepts per sample); see `l1_rule.py`."""
    batch_size: int = 1024
    """Rows per global mini-batch (split over the ranks of a data-parallel fit)."""
    block_rows: int = 256
    """Consecutive rows read together; blocks are shuffled every epoch."""
    max_epochs: int = 10
    """Passes over the data at most."""
    tol: float = 1e-4
    """Stop when one epoch lowers the running objective by less than this fraction."""
    memory_epochs: float = 0.5
    """Longest memory of the statistics, in passes over the data (caps Mairal's forgetting factor)."""
    init: str = "svd"
    """Start: 'svd' (signed top singular vectors), 'kmeans++' or 'random', on `init_rows` rows."""
    init_rows: int = 8192
    """Rows read up front for the start and for re-seeding dead atoms."""
    lasso_max_iter: int = 200
    """Sweeps of the code solver per mini-batch at most."""
    lasso_tol: float = 1e-5
    """Relative tolerance of the code solver (0: run until no code changes, exact across batch splits)."""
    seed: int = 0
    """Seeds the block order and the start; same seed and data, same dictionary (on any number of ranks)."""
    shuffle: bool = True
    """Shuffle the blocks every epoch (off: read in store order)."""


@dataclass
class _State:
    """Everything a fit needs to continue: the dictionary, the statistics and the position in the schedule."""

    W_dec: Tensor
    A: Tensor
    B: Tensor
    running: Tensor  # the current epoch's running objective, accumulated on the device
    epoch: int = 0
    step: int = 0  # next step inside `epoch`
    t: int = 0  # steps taken in all
    history: list[float] = field(default_factory=list)
    done: bool = False  # converged or out of epochs


def _check_finite(Z: Tensor, epoch: int, step: int) -> None:
    if not all_finite(Z):
        n_bad = int((~torch.isfinite(Z)).any(dim=1).sum())
        raise InputError(f"Z holds NaN or inf in {n_bad} rows of the batch at epoch {epoch}, step {step}; "
                         "drop or repair those rows first")


class OnlineSemiNMF(L1Penalty, ConceptDictionary):
    """Semi-NMF learnt from mini-batches streamed from memory or disk (Mairal et al. 2010).

    `fit` accepts a tensor or numpy array [n, d] (a `np.memmap` is read from disk), a list of
    .safetensors shards, or a row source such as a `RepresentationStore` layer. Inside an initialised
    torch.distributed process group every rank must pass the same data; each encodes its share of every
    mini-batch and all end with the same dictionary (`distributed.py`).

    After `fit`: `W_dec` [K, d], `history_` (running objective per epoch), `n_steps_`, `n_epochs_`.
    """

    architecture = "semi_nmf"
    max_atom_norm = 1.0
    rescales_itself = True  # streamed: each batch is divided by the scale found on the start rows

    def __init__(
        self,
        n_concepts: int,
        l1: float | str | L1Rule = 1.0,
        *,
        batch_size: int = 1024,
        block_rows: int = 256,
        max_epochs: int = 10,
        tol: float = 1e-4,
        memory_epochs: float = 0.5,
        init: str = "svd",
        init_rows: int = 8192,
        lasso_max_iter: int = 200,
        lasso_tol: float = 1e-5,
        seed: int = 0,
        shuffle: bool = True,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        process_group=None,
        progress: bool | None = None,
    ):
        """Options as in `OnlineConfig`; `checkpoint` is a .safetensors path written every `checkpoint_every`
        steps and at each epoch's end (rerun with the same path to resume); `process_group` defaults to
        torch.distributed's default group when one is initialised. `progress`: a tqdm bar of the mini-batches
        with each epoch's objective, on rank 0 (None: the process default, off in the library, on under the
        `lmm-concepts` command); each epoch is logged at INFO too (logger `lmm_concepts.dictionary.online`)."""
        super().__init__(n_concepts, device=device, dtype=dtype)
        self._init_l1(l1)
        self._progress = progress  # not a saved parameter (get_params skips it): it changes nothing fitted
        spec = self.l1 if self.l1_rule is None else self.l1_rule
        self.config = OnlineConfig(n_concepts, spec, batch_size, block_rows, max_epochs, tol, memory_epochs, init,
                                   init_rows, lasso_max_iter, lasso_tol, seed, shuffle)
        for f in fields(OnlineConfig):  # each option also under its own name (get_params, sae-lens export)
            if f.name != "l1":  # `l1` (the penalty in use) and `l1_rule` come from `_init_l1`
                setattr(self, f.name, getattr(self.config, f.name))
        self.checkpoint_every = checkpoint_every
        if init not in _INITS:
            raise InputError(f"init must be one of {sorted(_INITS)}, got {init!r}")
        for name in ("batch_size", "block_rows", "max_epochs", "init_rows", "lasso_max_iter", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            raise InputError(f"dtype must be a floating dtype (float32, float64, bfloat16, float16), got {dtype}")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.process_group = process_group
        self.history_: list[float] = []

    # ------------------------------------------------------------------ dtypes
    @property
    def _stat_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def _device_for(self, source: RowSource) -> torch.device:
        if self.device_ is not None:
            return self.device_
        probe = source.read(0, 0)
        return probe.device

    # ------------------------------------------------------------------ fitting
    def fit(self, Z, layer: int | str | None = None) -> OnlineSemiNMF:
        """Learn W_dec [K, d] from Z: a tensor or array [n, d] (a memmap stays on disk), a list of
        .safetensors shards, a `RepresentationStore` or its folder (with `layer`), or a row source."""
        source = as_row_source(Z, layer)
        cfg = self.config
        comm = Comm.current(self.process_group)
        device = self._device_for(source)
        if source.n_rows < cfg.n_concepts:
            raise InputError(
                f"{source.n_rows} samples is fewer than n_concepts={cfg.n_concepts}; "
                "collect more samples or ask for fewer concepts"
            )
        comm.check_same_rows(source.n_rows, source.d, source.dtype, same_n_rows=True, device=device)
        schedule = Schedule(source.n_rows, cfg.batch_size, cfg.block_rows, cfg.seed, cfg.shuffle)
        self._scale = 1.0
        try:
            pool = self._pool(source, schedule, device)
            # data of extreme scale is fitted as Z/s (every batch divided as it is read), s from the start rows
            scale = torch.tensor([data_scale(pool)], dtype=torch.float64, device=device)
            self._scale = float(comm.broadcast(scale, src=0)[0])
            pool = pool / self._scale
            self._resolve_rule(pool, comm)
            self._rescale(1.0 / self._scale)
            try:
                state = self._resume(source, comm, device) or self._start(pool, comm, device)
                self._run(source, schedule, pool, state, comm, device)
            finally:
                self._rescale(self._scale)
        except RankFailure:
            raise
        except BaseException as err:
            comm.report_failure(err)
            raise
        return self

    def _rescale(self, c: float) -> None:
        if not isinstance(self.l1, str):
            self.l1 = self.l1 * c
        self.history_ = [h * c * c for h in self.history_]

    def _resolve_rule(self, pool: Tensor, comm: Comm) -> None:
        """A data-relative l1 rule resolved on the start rows (training data only, already divided by the data's
        scale), rank 0's value everywhere, kept in the units of the data."""
        if self.l1_rule is None:
            return
        l1 = self._fit_l1(pool, semi_nmf_probe(self.n_concepts, self.config.seed), seed=self.config.seed)
        l1 = torch.tensor([l1 * self._scale], dtype=torch.float64, device=pool.device)
        self.l1 = float(comm.broadcast(l1, src=0)[0])

    def _pool(self, source: RowSource, schedule: Schedule, device: torch.device) -> Tensor:
        """The first `init_rows` rows of epoch 0's order: the start's data and the re-seeding candidates."""
        m = min(self.config.init_rows, source.n_rows)
        ranges = [r for batch in schedule.batches(0) for r in batch]
        return read_ranges(source, slice_ranges(ranges, 0, m)).to(device=device, dtype=self._stat_dtype)

    def _start(self, pool: Tensor, comm: Comm, device: torch.device) -> _State:
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        W = _INITS[cfg.init](pool, cfg.n_concepts, generator=g).to(self._stat_dtype)
        comm.broadcast(W, src=0)  # identical on every rank even if the SVDs differ in the last bit
        K, d = W.shape
        zeros = dict(device=device, dtype=self._stat_dtype)
        return _State(W, torch.zeros(K, K, **zeros), torch.zeros(d, K, **zeros), torch.zeros((), **zeros))

    def _beta(self, t: int, steps_per_epoch: int) -> float:
        """Mairal's mini-batch forgetting factor at step t (0-based), capped by `memory_epochs`."""
        eta = self.config.batch_size
        theta = eta * (t + 1) if t < eta - 1 else eta**2 + t + 1 - eta
        beta = (theta + 1 - eta) / (theta + 1)
        return min(beta, 1.0 - 1.0 / max(self.config.memory_epochs * steps_per_epoch, 1.0))

    def _run(self, source: RowSource, schedule: Schedule, pool: Tensor, st: _State, comm: Comm,
             device: torch.device) -> None:
        cfg = self.config
        K, d = st.W_dec.shape
        packed = torch.empty(K * K + d * K + 3, device=device, dtype=self._stat_dtype)
        self._set_W(st.W_dec)
        progress = FitProgress(  # rank 0 speaks for all: every rank runs the same steps
            logger, f"OnlineSemiNMF K={K} on {source.n_rows}x{d}", progress=self._progress if comm.rank == 0 else False,
            total=schedule.steps_per_epoch * cfg.max_epochs, initial=st.t, unit="batch", log=comm.rank == 0,
        )  # fmt: skip
        with progress:
            self._epochs(source, schedule, pool, st, comm, device, packed, progress)
        self._set_W(st.W_dec)
        self.history_, self.n_steps_, self.n_epochs_ = st.history, st.t, st.epoch
        progress.close(
            f"{'converged' if _converged(st.history, cfg.tol) else f'max_epochs={cfg.max_epochs} reached'} after {st.epoch} epochs "
            f"({st.t} mini-batches); running objective {st.history[-1] * self._scale**2:.6g}" if st.history else
            "no epoch run"
        )  # fmt: skip

    def _epochs(self, source: RowSource, schedule: Schedule, pool: Tensor, st: _State, comm: Comm,
                device: torch.device, packed: Tensor, progress: FitProgress) -> None:
        cfg = self.config
        K, d = st.W_dec.shape
        while not st.done and st.epoch < cfg.max_epochs:
            if st.step == 0:
                st.running.zero_()
            bad_rows = torch.zeros((), dtype=torch.int64, device=device)
            for step, Z_local in iter_batches(source, schedule, st.epoch, rank=comm.rank,
                                              world_size=comm.world_size, start_step=st.step):
                if Z_local.device.type == "cpu":  # checked before the copy: no device sync
                    _check_finite(Z_local, st.epoch, step)
                else:  # data already on the device: counted here, checked once per epoch
                    bad_rows += (~torch.isfinite(Z_local)).any(dim=1).sum()
                Z = Z_local.to(device=device, dtype=self.dtype, non_blocking=True)
                if self._scale != 1.0:
                    Z = Z / self._scale
                W = st.W_dec
                V = self._codes(Z, W)
                # this rank's statistics, packed for one all-reduce: A_b, B_b, ½‖Z‖², ΣV, rows
                Vs = V.to(self._stat_dtype)
                packed[: K * K].view(K, K).copy_(Vs.T @ Vs)
                packed[K * K : K * K + d * K].view(d, K).copy_((Z.T @ V.to(self.dtype)).to(self._stat_dtype))
                Zs = Z.to(self._stat_dtype)
                packed[-3] = 0.5 * (Zs * Zs).sum()
                packed[-2] = Vs.sum()
                packed[-1] = Z.shape[0]
                total = comm.all_reduce_sum(packed, step=st.t)
                A_b = total[: K * K].view(K, K)
                B_b = total[K * K : K * K + d * K].view(d, K)
                sq_half, sum_V, rows = total[-3], total[-2], total[-1]
                # running objective under the dictionary that encoded this batch (from the batch's statistics)
                st.running += sq_half - (W.T * B_b).sum() + 0.5 * ((W @ W.T) * A_b).sum() + self.l1 * sum_V
                beta = self._beta(st.t, schedule.steps_per_epoch)
                st.A.mul_(beta).add_(A_b / rows)
                st.B.mul_(beta).add_(B_b / rows)
                st.W_dec, _ = update_dictionary(st.W_dec, st.A, st.B)
                st.step, st.t = step + 1, st.t + 1
                progress.step()
                if self.checkpoint is not None and st.t % self.checkpoint_every == 0:
                    self._save(st, comm)
            # end of epoch: re-seed atoms nobody uses, check convergence (the one host sync per epoch)
            if int(bad_rows):
                raise InputError(f"Z holds NaN or inf in {int(bad_rows)} rows read in epoch {st.epoch}; "
                                 "drop or repair those rows first (the last checkpoint predates them)")
            st.W_dec = self._reseed(st.W_dec, st.A, pool)
            st.history.append(float(st.running))
            # in the data's units (the fit runs on Z/s)
            progress.report(f"epoch {st.epoch + 1}/{cfg.max_epochs}", st.history[-1] * self._scale**2, info=True)
            st.epoch, st.step = st.epoch + 1, 0
            st.done = st.epoch >= cfg.max_epochs or _converged(st.history, cfg.tol)
            if self.checkpoint is not None:
                self._save(st, comm)

    def _codes(self, Z: Tensor, W: Tensor) -> Tensor:
        """Codes of a batch: C = Z·W_decᵀ in `dtype` (the big GEMM), the K×K solve in float32/64."""
        cfg = self.config
        C = (Z @ W.to(self.dtype).T).to(self._stat_dtype)
        # FISTA, not "auto": mid-training codes are dense (~45 of K = 256 on the benchmark's planted data), where
        # the active-set solver that "auto" picks for cold starts above K = 64 is ~15% slower even with its hand-over
        method = "fista" if W.shape[0] > CD_MAX_CONCEPTS else "auto"
        return nonneg_lasso_gram(C, W @ W.T, self.l1, max_iter=cfg.lasso_max_iter, tol=cfg.lasso_tol, method=method)

    def _reseed(self, W: Tensor, A: Tensor, pool: Tensor) -> Tensor:
        """Atoms no code used (A_kk ≈ 0) become the worst-reconstructed pool rows' residual directions."""
        diag = A.diagonal()
        dead = diag <= 1e-10 * diag.mean().clamp_min(torch.finfo(A.dtype).tiny)
        if not bool(dead.any()):
            return W
        V = self._codes(pool.to(self.dtype), W).to(pool.dtype)
        R = pool - V @ W
        worst = torch.linalg.vector_norm(R, dim=1).argsort(descending=True)
        return reseed_atoms(W, dead, R[worst])

    def _set_W(self, W: Tensor) -> None:
        self.W_dec = W.detach().clone()

    # ------------------------------------------------------------------ checkpoints
    def _ckpt_meta(self, source: RowSource) -> dict:
        return {"config": asdict(self.config), "n_rows": source.n_rows, "d": source.d,
                "data_dtype": str(source.dtype), "dtype": str(self.dtype)}

    def _save(self, st: _State, comm: Comm) -> None:
        if comm.rank != 0:
            return
        meta = dict(self._meta, epoch=st.epoch, step=st.step, t=st.t, done=st.done, history=st.history)
        write_safetensors(self.checkpoint, {"W_dec": st.W_dec, "A": st.A, "B": st.B, "running": st.running},
                          metadata={"lmm_concepts_online": json.dumps(meta)})

    def _resume(self, source: RowSource, comm: Comm, device: torch.device) -> _State | None:
        """The state saved at `checkpoint`, if any, after checking it belongs to this fit (rank 0 reads it)."""
        self._meta = self._ckpt_meta(source)
        have = [int(self.checkpoint is not None and self.checkpoint.exists())]
        have = comm.gather_ints(have, device)[0][0]
        if not have:
            return None
        K, d = self.config.n_concepts, source.d
        zeros = dict(device=device, dtype=self._stat_dtype)
        st = _State(torch.zeros(K, d, **zeros), torch.zeros(K, K, **zeros), torch.zeros(d, K, **zeros),
                    torch.zeros((), **zeros))
        cdev = comm.collective_device(device)
        pos = torch.zeros(4, dtype=torch.int64, device=cdev)
        meta = {}
        if comm.rank == 0:
            with safe_open(str(self.checkpoint), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("lmm_concepts_online", "{}"))
                saved = {k: meta.get(k) for k in self._meta}
                if saved != self._meta:
                    diff = [k for k in self._meta if saved.get(k) != self._meta[k]]
                    raise InputError(
                        f"checkpoint {self.checkpoint} belongs to a different fit (differs in {diff}: saved "
                        f"{ {k: saved.get(k) for k in diff} }); delete it or pass another checkpoint path"
                    )
                for name in ("W_dec", "A", "B", "running"):
                    getattr(st, name).copy_(f.get_tensor(name))
            pos = torch.tensor([meta["epoch"], meta["step"], meta["t"], meta["done"]], device=cdev)
        for tensor in (st.W_dec, st.A, st.B, st.running, pos):
            comm.broadcast(tensor, src=0)
        st.epoch, st.step, st.t, done = (int(x) for x in pos.tolist())
        st.done = bool(done)
        hist = torch.tensor(meta.get("history", [0.0] * st.epoch), dtype=torch.float64, device=cdev)
        st.history = comm.broadcast(hist, src=0).tolist()
        return st

    # ------------------------------------------------------------------ using the dictionary
    def encode(self, Z: ArrayLike) -> Float[Tensor, "n n_concepts"]:
        """Codes V [n, K] >= 0 of Z under the fitted dictionary."""
        Z = self._as_tensor(Z, fitting=False)
        return nonneg_lasso(Z.to(self._stat_dtype), self.W_dec, self.l1,
                            max_iter=10 * self.config.lasso_max_iter, tol=min(self.config.lasso_tol, 1e-6))

    def objective(self, Z, batch_size: int = 8192) -> float:
        """½‖Z − V·W_dec‖² + l1·ΣV with the codes re-solved under the final dictionary, streamed in batches."""
        self._check_fitted()
        source = as_row_source(Z)
        total = 0.0
        for start in range(0, source.n_rows, batch_size):
            Zb = self._as_tensor(source.read(start, min(start + batch_size, source.n_rows)), fitting=False)
            Zb = Zb.to(self._stat_dtype)
            V = self.encode(Zb)
            R = Zb.double() - V.double() @ self.W_dec.double()  # float64: squares of extreme data stay finite
            total += float(0.5 * (R * R).sum(dtype=torch.float64) + self.l1 * V.sum(dtype=torch.float64))
        return total
