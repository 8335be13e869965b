"""Faithfulness: does the model *use* a concept to predict its words?

Intervention. For concept k and each sample where it is active (v_k > `min_activation`), remove its component
c = v_k·u_k from the activation at the explanations' hook (where the dictionary was fitted), at the sample's token p
only, and rerun the model on the sample's own sequence (teacher forcing on the caption the model generated, see
`metrics.sequences.store_sequences`). Control: the same removal along random directions of the same per-sample norm
‖c‖ (`n_random` unit directions per concept, drawn uniformly on the sphere).

Score. At a position, with Δ = logits(clean) − logits(ablated) over the vocabulary, a word's drop is its logit
change relative to the vocabulary's common shift,

    drop_w = Δ[w] − median over the vocabulary of Δ        (Δ[w]: the change of logsumexp over w's variant tokens)

(a word's case / leading-space variant tokens count as one word), and a concept's drop is the mean over its grounded
words. Adding a constant to every logit changes nothing, so the softmax normaliser does not enter: when the ablation
lowers a dominant next token, every other word's log-probability rises, but its drop stays 0. (A log-probability drop
was fooled by exactly this.) The median, not the mean, sets the reference so that the few tokens the
ablation does move (the dominant one among them) do not shift it: in the toy's 50-token vocabulary one token falling
by 8 moves the mean by 0.16. A log-odds against every token but the token of interest would still move with the
competition among the remaining tokens.

Effects, each a mean over the concept's active samples:

    next_token    the drop at p: the prediction of the token after p (total effect)
    direct        the part of next_token that goes straight through the residual stream: c removed from the final
                  residual at p with every block's output kept clean, then the final norm and the unembedding. Up to
                  the final norm's scale (and the bias the "ln_final" lens adds) this is the logit lens of u_k, the
                  lens that chose the words: it tests nothing about the model
    indirect      next_token − direct: the part carried by the later blocks at p
    continuation  the drop at the caption's later positions p+1 … end−1 (predictions of the tokens after the next),
                  averaged over them: what later tokens read from p through attention

Which are defined depends on what reads the hook (n = the model's blocks, L = the hook's block):

    ln_final.hook_out, ln_final.hook_normalized, blocks.{n−1}.hook_resid_post (store layer "final" and the last
        residual): only the unembedding at p reads the vector (through the final norm at most). Every effect is the
        lens's own arithmetic (at ln_final.hook_out the logit change is exactly v_k·W_U·u_k): `definitional` is
        True, only next_token (= direct) is reported, and the headline is NaN. Nothing here can test use; fit the
        dictionary at a residual layer before the last
    blocks.{n−1}.hook_resid_mid / hook_attn_out: the last MLP reads it at p: indirect defined; no later token reads it
    blocks.L.hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out before that: all four

Headline (`mean_drop`, `mean_random_drop`, `frac_above_random`): the effect named by `score`, by default `indirect`
(the model's use of the concept at the token, the lens's direct read-out removed). A concept is *above random* on an
effect when its drop exceeds the mean + 2 standard deviations (ddof 1) of its random directions' drops;
`frac_above_random` is the share of scored concepts above random, `mean_drop` the mean of their drops and
`mean_random_drop` the mean of their random means.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from lmm_concepts.hooks import remove_component_hook
from lmm_concepts.metrics.sequences import StoreSequences
from lmm_concepts.models.interface import FINAL_HOOK, LEGACY_FINAL_HOOK, LMM, resid_hook

EFFECTS = ("next_token", "direct", "indirect", "continuation")
SCORES = ("auto", *EFFECTS)
ABOVE_RANDOM_STDS = 2.0
"""A concept is above random when its drop exceeds the random drops' mean + this many standard deviations."""


# ------------------------------------------------------------------------------------------------ where a hook sits
@dataclass(frozen=True)
class HookReach:
    """What reads a vector written at a hook."""

    same_token: bool
    """a later block reads it at its own position (so an indirect effect exists)"""
    later_tokens: bool
    """attention reads it at later positions (so a continuation effect exists)"""
    residual: bool
    """the hook is in the residual stream: a change there reaches the final residual unchanged (the direct path)"""

    @property
    def definitional(self) -> bool:
        """Nothing but the unembedding (through the final norm) reads the vector: every effect is the lens's."""
        return not (self.same_token or self.later_tokens)


_FINAL_NORM = (FINAL_HOOK, LEGACY_FINAL_HOOK)
_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|attn_out|mlp_out|resid_post)$")
_STEP = {"resid_pre": 0, "resid_mid": 1, "attn_out": 1, "mlp_out": 2, "resid_post": 2}


def hook_reach(hook_name: str, n_layers: int) -> HookReach:
    """Classify a hook by what reads it (the module docstring's table).

    Residual time t counts sub-layers: block L's attention reads time 2L, its MLP 2L + 1, its output is time 2L + 2.
    A change at time t reaches block L's attention iff 2L ≥ t, and some later sub-layer iff t ≤ 2n − 1."""
    if hook_name in _FINAL_NORM:
        return HookReach(same_token=False, later_tokens=False, residual=False)
    m = _BLOCK_HOOK.match(hook_name)
    if m is None:
        raise ValueError(
            f"faithfulness cannot place hook {hook_name!r}: it removes a d_model vector and needs to know what reads "
            f"it. Use a dictionary fitted at {FINAL_HOOK!r}, 'blocks.{{L}}.hook_resid_post' (or resid_pre / "
            "resid_mid / attn_out / mlp_out)"
        )
    layer = int(m.group(1))
    if layer >= n_layers:
        raise ValueError(f"hook {hook_name!r} is past the model's {n_layers} blocks")
    t = 2 * layer + _STEP[m.group(2)]
    return HookReach(same_token=t <= 2 * n_layers - 1, later_tokens=t <= 2 * (n_layers - 1), residual=True)


# ------------------------------------------------------------------------------------------------ results
@dataclass
class EffectScore:
    """One concept on one effect."""

    drop: float
    """the concept's mean drop over its samples"""
    random_drop_mean: float
    random_drop_std: float
    """over the random directions (ddof 1)"""
    beats_random: float
    """share of random directions whose drop is below the concept's"""
    above_random: bool
    """drop > random_drop_mean + ABOVE_RANDOM_STDS·random_drop_std"""
    n_samples: int


@dataclass
class EffectSummary:
    """One effect over the scored concepts."""

    mean_drop: float
    mean_random_drop: float
    frac_above_random: float
    n_concepts: int


@dataclass
class ConceptFaithfulness:
    index: int
    n_samples: int
    """samples where the concept is active"""
    effects: dict[str, EffectScore]
    """every effect defined at the hook (and with samples: continuation needs a later caption token)"""
    drop: float
    """the headline effect's drop (NaN where there is none)"""
    random_drop_mean: float
    random_drop_std: float
    above_random: bool


@dataclass
class FaithfulnessResult:
    hook_name: str
    score: str | None
    """the headline effect; None where nothing downstream reads the hook (`definitional`)"""
    definitional: bool
    """True where only the unembedding reads the hook's vectors: every effect is the lens's arithmetic"""
    mean_drop: float
    mean_random_drop: float
    frac_above_random: float
    """the headline effect's summary (NaN when `score` is None); see the module docstring"""
    effects: dict[str, EffectSummary]
    per_concept: list[ConceptFaithfulness]
    n_random: int
    n_samples: int
    skipped: list[int] = field(default_factory=list)
    """concepts without words or without an active sample"""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ scores
def word_drop(clean: Float[Tensor, "m d_vocab"], ablated: Float[Tensor, "m d_vocab"], words: list[list[int]]) -> Tensor:
    """[m] the mean over words of each word's logit drop (logsumexp over its variant ids `words[i]`) minus the
    median drop over the vocabulary (the module docstring's score)."""
    per_word = torch.stack([clean[:, ids].logsumexp(-1) - ablated[:, ids].logsumexp(-1) for ids in words], dim=1)
    return per_word.mean(1) - (clean - ablated).median(dim=-1).values


def _logits(model: LMM, final: Float[Tensor, "m d_model"]) -> Tensor:
    return model.unembed_vectors(final, use_bias=True).float()


def _at(acts: Float[Tensor, "batch pos d"], batch: Tensor, position: Tensor) -> Float[Tensor, "m d"]:
    return acts[batch.to(acts.device), position.to(acts.device)]


@dataclass
class _Layout:
    """The (row, position) pairs scored for a list of rows: p first, then the later caption positions."""

    batch: Tensor
    position: Tensor
    first: Tensor
    """True at each row's token p"""
    segment: Tensor
    """the batch row of each pair"""


def _layout(rows: list[int], positions: list[int], later: list[range]) -> _Layout:
    b, pos, first = [], [], []
    for j, i in enumerate(rows):
        ps = [positions[i], *later[i]]
        b += [j] * len(ps)
        pos += ps
        first += [True] + [False] * (len(ps) - 1)
    b_t = torch.tensor(b, dtype=torch.long)
    return _Layout(b_t, torch.tensor(pos, dtype=torch.long), torch.tensor(first), b_t)


def _split(drops: Tensor, lay: _Layout, n_rows: int) -> tuple[Tensor, Tensor]:
    """Per-row drop at p, and mean drop over the row's later positions (NaN for a row without any)."""
    at_p = drops[lay.first]
    later = ~lay.first
    total = torch.zeros(n_rows).index_add_(0, lay.segment[later], drops[later])
    count = torch.zeros(n_rows).index_add_(0, lay.segment[later], torch.ones(int(later.sum())))
    return at_p, torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


def _effect(values: Tensor) -> EffectScore | None:
    """values [1 + n_random, n_samples] (row 0: the concept), NaN where a sample has no value."""
    keep = ~values[0].isnan()
    if not bool(keep.any()):
        return None
    per_dir = values[:, keep].mean(1)
    drop, rand = per_dir[0].item(), per_dir[1:]
    mean, std = rand.mean().item(), rand.std().item()
    return EffectScore(drop=drop, random_drop_mean=mean, random_drop_std=std,
                       beats_random=(rand < drop).float().mean().item(),
                       above_random=bool(drop > mean + ABOVE_RANDOM_STDS * std), n_samples=int(keep.sum()))


def _summary(scores: list[EffectScore]) -> EffectSummary:
    n = len(scores)
    return EffectSummary(mean_drop=sum(s.drop for s in scores) / n,
                         mean_random_drop=sum(s.random_drop_mean for s in scores) / n,
                         frac_above_random=sum(s.above_random for s in scores) / n, n_concepts=n)


@dataclass
class _Run:
    """The sequences, where each row is scored, and the clean pass's activations, shared by every ablation."""

    model: LMM
    sequences: StoreSequences
    hook_name: str
    positions: list[int]
    later: list[range]
    """each row's later caption positions p+1 … end−1 (empty where no later token reads the hook)"""
    direct_path: bool
    Z: Tensor
    """[n, d] the hook's activation at p (what the codes encode)"""
    r_last: Tensor | None
    """[n, d] the last block's residual at p (direct path only)"""
    final: Tensor
    """[scored positions, d] the final norm's output, each row's p then its later positions; rows start at `start`"""
    start: list[int]

    @classmethod
    def prepare(cls, model: LMM, sequences: StoreSequences, hook_name: str, reach: HookReach,
                batch_size: int) -> _Run:
        """The clean pass. The final norm's output is kept rather than logits: [positions, d_vocab] would be larger."""
        positions = sequences.positions.long().tolist()
        ends = sequences.ends.tolist()
        for i, (p, e) in enumerate(zip(positions, ends, strict=True)):
            if not 0 <= p <= e:
                raise ValueError(f"row {i}: its token position {p} is not a real token of its sequence (last: {e})")
        later = [range(p + 1, e) if reach.later_tokens else range(0) for p, e in zip(positions, ends, strict=True)]
        last = resid_hook(model.n_layers - 1)
        direct_path = reach.same_token and reach.residual
        names = list(dict.fromkeys([hook_name, FINAL_HOOK, *([last] if direct_path else [])]))
        device = model.device
        Z, R_last, final, start = [], [], [], [0]
        for s in range(0, len(positions), batch_size):
            rows = list(range(s, min(s + batch_size, len(positions))))
            lay = _layout(rows, positions, later)
            acts = model.capture(sequences.inputs.select(rows).truncate(int(lay.position.max()) + 1).to(device), names)
            Z.append(_at(acts[hook_name], torch.arange(len(rows)), lay.position[lay.first]).float().cpu())
            if direct_path:
                R_last.append(_at(acts[last], torch.arange(len(rows)), lay.position[lay.first]).cpu())
            final.append(_at(acts[FINAL_HOOK], lay.batch, lay.position).cpu())
            for i in rows:
                start.append(start[-1] + 1 + len(later[i]))
        return cls(model, sequences, hook_name, positions, later, direct_path, torch.cat(Z),
                   torch.cat(R_last) if direct_path else None, torch.cat(final), start)

    def concept(self, comp: Float[Tensor, "n d"], directions: Float[Tensor, "n_random d"], active: list[int],
                words: list[list[int]], chunk: int) -> dict[str, Tensor]:
        """Every effect [1 + n_random, len(active)] of removing comp[i] = v_k·u_k at row i's token (row 0), or
        ‖comp[i]‖ along each random direction (rows 1 …); NaN where a row has no value."""
        n_dir = 1 + directions.shape[0]
        vals = {e: torch.full((n_dir, len(active)), math.nan) for e in ("next_token", "direct", "continuation")}
        for s in range(0, len(active), chunk):
            rows = active[s : s + chunk]
            norms = comp[rows].norm(dim=1, keepdim=True)
            deltas = torch.cat([comp[rows], *(norms * e for e in directions)])  # [n_dir·len(rows), d]
            for effect, v in self.drops(rows, deltas, words).items():
                vals[effect][:, s : s + len(rows)] = v.reshape(n_dir, len(rows))
        if not self.direct_path:  # only the unembedding reads the vector: the whole effect is the direct one
            vals["direct"] = vals["next_token"]
        vals["indirect"] = vals["next_token"] - vals["direct"]
        return vals

    def drops(self, rows: list[int], deltas: Tensor, words: list[list[int]]) -> dict[str, Tensor]:
        """Remove deltas[j·c + r] at row rows[r]'s token, j = 0 … n_dir − 1 (c = len(rows)); per batch row: the drop
        at p ("next_token"), the mean drop over the later positions ("continuation", NaN without any) and, on the
        direct path, the drop with the removal applied to the final residual alone ("direct")."""
        model, device = self.model, self.model.device
        n_dir = deltas.shape[0] // len(rows)
        batch_rows = rows * n_dir
        lay = _layout(batch_rows, self.positions, self.later)
        hook = remove_component_hook(deltas, torch.tensor([self.positions[i] for i in batch_rows]))
        inputs = self.sequences.inputs.select(batch_rows).truncate(int(lay.position.max()) + 1).to(device)
        final = model.capture(inputs, [FINAL_HOOK], fwd_hooks=[(self.hook_name, hook)])[FINAL_HOOK]
        ablated = _logits(model, _at(final, lay.batch, lay.position))
        clean_idx = torch.cat([torch.arange(self.start[i], self.start[i + 1]) for i in rows])
        clean = _logits(model, self.final[clean_idx].to(device)).repeat(n_dir, 1)
        at_p, cont = _split(word_drop(clean, ablated, words).cpu(), lay, len(batch_rows))
        out = {"next_token": at_p, "continuation": cont}
        if self.direct_path:
            r = self.r_last[rows]
            base = _logits(model, model.final_norm(r.to(device))).repeat(n_dir, 1)
            cut = (r.float().repeat(n_dir, 1) - deltas).to(r.dtype)
            out["direct"] = word_drop(base, _logits(model, model.final_norm(cut.to(device))), words).cpu()
        return out


# ------------------------------------------------------------------------------------------------ the measure
@torch.no_grad()
def faithfulness(
    model: LMM,
    explanations,
    sequences: StoreSequences,
    *,
    dictionary=None,
    codes: Float[Tensor, "n K"] | None = None,
    concepts: list[int] | None = None,
    n_random: int = 10,
    min_activation: float = 0.0,
    score: str = "auto",
    batch_size: int = 32,
    seed: int = 0,
) -> FaithfulnessResult:
    """Per-concept and aggregate faithfulness of `explanations` on the sequences of a store (see the module docstring).

    Args:
        sequences: `store_sequences(model, store)`: each sample's full sequence and its token p.
        dictionary: the fitted dictionary (default: the one the explanations keep), checked to be the one they were
            grounded from; it encodes the activations at p to find where each concept is active.
        codes: V [n, K] at those tokens instead of encoding them.
        concepts: the concepts to score (default: all).
        n_random: random directions per concept (at least 2: the control needs a spread).
        min_activation: a concept is active on a sample when v_k exceeds this.
        score: the headline effect: "auto" (indirect where defined), or one of `EFFECTS` defined at the hook.
        batch_size: sequences per forward pass.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if n_random < 2:
        raise ValueError(f"n_random must be >= 2 (the control needs a spread of random drops), got {n_random}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(sequences)
    if n == 0:
        raise ValueError("faithfulness needs at least one sample; the test set is empty")
    hook_name = explanations.hook_name
    W_dec = explanations.W_dec.detach().float().cpu()
    if W_dec.shape[1] != model.d_model:
        raise ValueError(
            f"the explanations' concept vectors have d={W_dec.shape[1]} but the model's d_model is "
            f"{model.d_model}: they were grounded on another model"
        )
    reach = hook_reach(hook_name, model.n_layers)
    available = ["next_token", "direct", *(["indirect"] if reach.same_token else []),
                 *(["continuation"] if reach.later_tokens else [])]
    headline = ("indirect" if reach.same_token else None) if score == "auto" else score
    if headline is not None and headline not in available:
        raise ValueError(f"score={score!r} is not defined at {hook_name!r} (nothing after it reads the vector that "
                         f"way); defined there: {available}")
    ks = list(range(len(explanations))) if concepts is None else list(concepts)
    bad = [k for k in ks if not 0 <= k < len(explanations)]
    if bad:
        raise ValueError(f"concepts {bad} are not among the {len(explanations)} concepts")

    # every ablation reruns the language model on the same images, and only language-model hooks are placed here:
    # encode each image once (the toy's vision half was two thirds of the time)
    sequences = dataclasses.replace(sequences, inputs=model.encode_images_once(sequences.inputs))
    run = _Run.prepare(model, sequences, hook_name, reach, batch_size)
    if codes is None:
        from lmm_concepts.grounding.store_access import encode_all

        dictionary = explanations.paired(dictionary, needed_for="faithfulness (without codes=V)")
        codes = encode_all(dictionary, run.Z.to(dictionary.W_dec))
    codes = codes.float().cpu()
    if tuple(codes.shape) != (n, len(explanations)):
        raise ValueError(f"codes have shape {tuple(codes.shape)}, expected ({n}, {len(explanations)}): one row per "
                         "sequence, one column per concept")

    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, batch_size // (1 + n_random))  # rows per forward pass: each goes once per direction
    per_concept, skipped = [], []
    for k in ks:
        words = explanations[k].word_token_ids
        active = (codes[:, k] > min_activation).nonzero().flatten().tolist()
        if not words or not active:
            skipped.append(k)
            continue
        directions = torch.nn.functional.normalize(torch.randn(n_random, W_dec.shape[1], generator=gen), dim=1)
        vals = run.concept(codes[:, k, None] * W_dec[k], directions, active, words, chunk)
        effects = {e: sc for e in available if (sc := _effect(vals[e])) is not None}
        head = effects.get(headline) if headline is not None else None
        per_concept.append(ConceptFaithfulness(
            index=k, n_samples=len(active), effects=effects,
            drop=head.drop if head else math.nan,
            random_drop_mean=head.random_drop_mean if head else math.nan,
            random_drop_std=head.random_drop_std if head else math.nan,
            above_random=bool(head.above_random) if head else False,
        ))
    if not per_concept:
        raise ValueError("no concept could be scored: none has grounded words and an active sample in this data")

    summaries = {}
    for e in available:
        scored = [c.effects[e] for c in per_concept if e in c.effects]
        if scored:
            summaries[e] = _summary(scored)
    notes = _notes(hook_name, reach, headline, summaries, sequences)
    head_summary = summaries.get(headline) if headline is not None else None
    return FaithfulnessResult(
        hook_name=hook_name,
        score=headline if head_summary is not None else None,
        definitional=reach.definitional,
        mean_drop=head_summary.mean_drop if head_summary else math.nan,
        mean_random_drop=head_summary.mean_random_drop if head_summary else math.nan,
        frac_above_random=head_summary.frac_above_random if head_summary else math.nan,
        effects=summaries,
        per_concept=per_concept,
        n_random=n_random,
        n_samples=n,
        skipped=skipped,
        notes=notes,
    )


def faithfulness_line(f: dict) -> str:
    """One markdown line for a `FaithfulnessResult.to_dict()` (the evaluation report's)."""
    if f.get("score") is None:
        nt = f.get("effects", {}).get("next_token")
        extra = (f"; next-token drop {nt['mean_drop']:.4f} vs random {nt['mean_random_drop']:.4f} is the lens's own "
                 "arithmetic") if nt else ""
        return f"- faithfulness at {f['hook_name']}: not testable (only the unembedding reads this layer){extra}"
    parts = [f"{name} {e['mean_drop']:.4f} vs random {e['mean_random_drop']:.4f} "
             f"({100 * e['frac_above_random']:.0f}% of concepts above random)" for name, e in f["effects"].items()]
    return (f"- faithfulness at {f['hook_name']} (relative-logit drop of a concept's words; headline {f['score']}): "
            + "; ".join(parts))


def _notes(hook_name: str, reach: HookReach, headline: str | None, summaries: dict, sequences) -> list[str]:
    notes = []
    if reach.definitional:
        notes.append(
            f"{hook_name}: only the unembedding at the token reads these vectors, so removing v_k·u_k changes exactly "
            "the next-token logits the lens ranked the words by; every number here is definitional and none can "
            "test whether the model uses a concept. Measure at a residual layer before the last."
        )
    else:
        notes.append("direct is the lens's own read-out of u_k (up to the final norm), so it tests nothing; indirect "
                     "and continuation are what later computation does with the concept")
    if headline is not None and headline not in summaries:
        notes.append(f"no concept has a sample with a {headline} value (e.g. no caption token after the next one)")
    if getattr(sequences, "dropped", None):
        notes.append(f"{len(sequences.dropped)} samples dropped: their regenerated caption differs from the store's")
    return notes
