"""The metrics `evaluate` computes, one `Metric` object each: what it needs, its computation, its table columns
and its line under the table in results.md. `evaluate` checks the needs of the metrics asked for, then runs them in
registry order; a new metric is a function and one `register_metric` call here.

The inputs metrics share are computed at most once per `evaluate` call, on first use, by `EvalInputs`: the test
codes V and each sample's strongest concepts, the CLIP image embeddings of the test images, the CLIPScore matrix of
each row's words against them (used by both "clipscore" and "mas_words"), the test captions.

Needs: "codes" (the dictionary encodes the test samples), "clip", "bert", "model" (the model and the test store's
sequences, for faithfulness).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from lmm_concepts.errors import InputError
from lmm_concepts.grounding.explanations import concept_text
from lmm_concepts.grounding.ground import top_concepts
from lmm_concepts.grounding.store_access import encode_all, meta_get, store_matrix
from lmm_concepts.metrics.clipscore import clipscore_matrix, topr_mean
from lmm_concepts.metrics.faithfulness import faithfulness, faithfulness_line
from lmm_concepts.metrics.overlap import overlap


def noise_images(n: int, size: int = 224, seed: int = 0) -> list[Image.Image]:
    """Uniform RGB noise images (the noise-images baseline)."""
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8).numpy()
    return [Image.fromarray(a) for a in arr]


def encode_store_images(clip, store, ids: list, chunk: int = 256) -> Tensor:
    """CLIP image embeddings of a store's samples, loading `chunk` images at a time (bounded memory)."""
    return torch.cat(
        [clip.encode_images(store.images(ids[i : i + chunk])) for i in range(0, len(ids), chunk)]
    )


@dataclass
class EvalInputs:
    """What the metrics of one `evaluate` call read; every derived input is computed once, when first used."""

    explanations: Any
    test_store: Any
    layer: str
    r: int
    baselines: Sequence[str]
    results: Any  # the EvaluationResults being filled
    dictionary: Any = None
    clip: Any = None
    bert: Any = None
    model: Any = None
    faithfulness_inputs: Any = None
    n_mas: int | None = None
    seed: int = 0
    _text_scores: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @cached_property
    def Z(self) -> Tensor:
        """The test representations [n, d] at the explanations' layer."""
        return store_matrix(self.test_store, self.layer)

    @cached_property
    def V(self) -> Tensor:
        """Codes of the test samples [n, K]."""
        return encode_all(self.dictionary, self.Z.to(self.dictionary.W_dec.device))

    @cached_property
    def top(self) -> Tensor:
        """Each test sample's r strongest concepts [n, r], strongest first."""
        return top_concepts(self.V, self.r)[1]

    @cached_property
    def ids(self) -> list:
        return list(self.test_store.sample_ids)

    @cached_property
    def rows(self) -> dict[str, list[list[str]]]:
        """Table row -> each concept's words: the grounded words, and the random-words baseline when present."""
        rand_words = self.explanations.random_words or []
        use_random = "random_words" in self.baselines and len(rand_words) == self.explanations.n_concepts
        return {"concepts": self.explanations.words(), **({"random_words": rand_words} if use_random else {})}

    @cached_property
    def captions(self) -> list[list[str]]:
        """Each test sample's ground-truth captions."""
        return [list(meta_get(self.test_store, i, "captions") or []) for i in range(len(self.ids))]

    @cached_property
    def image_features(self) -> Tensor:
        """CLIP embeddings of the test images."""
        return encode_store_images(self.clip, self.test_store, self.ids)

    @cached_property
    def concept_text_features(self) -> dict[str, Tensor]:
        """CLIP embeddings of each row's concept texts ("A photo is described by the words …")."""
        return {row: self.clip.encode_texts([concept_text(w) for w in ws]) for row, ws in self.rows.items()}

    def text_scores(self, row: str) -> Tensor:
        """CLIPScore [n, K] of every test image with every concept's text of `row`."""
        if row not in self._text_scores:
            self._text_scores[row] = clipscore_matrix(self.image_features, self.concept_text_features[row])
        return self._text_scores[row]

    def put(self, row: str, col: str, per_sample: Tensor) -> None:
        """A table cell: the mean of `per_sample`, which is kept as an array too."""
        self.results.scores.setdefault(row, {})[col] = (
            per_sample.mean().item() if len(per_sample) else float("nan")
        )
        self.results.arrays[f"{row}/{col}"] = per_sample


@dataclass(frozen=True)
class Metric:
    """One metric of `evaluate`."""

    name: str
    compute: Callable[[EvalInputs], None]
    """fills the results: table cells with `inputs.put`, or its own field of `inputs.results`"""
    needs: frozenset[str] = frozenset()
    """of "codes", "clip", "bert", "model" (module docstring)"""
    columns: Callable[[int], tuple[str, ...]] = lambda r: ()
    """the table columns it fills in each row, for the top-r column r"""
    summary: Callable[[Any], str | None] = lambda res: None
    """its line under the table in results.md (None: no line)"""


# ------------------------------------------------------------------------------------------------ the metrics
def _overlap(inp: EvalInputs) -> None:
    inp.results.overlap = overlap(inp.explanations.words())


def _clipscore(inp: EvalInputs) -> None:
    r, top = inp.r, inp.top
    for row in inp.rows:
        S = inp.text_scores(row)
        inp.put(row, "clipscore_top1", topr_mean(S, top, 1))
        inp.put(row, f"clipscore_top{r}", topr_mean(S, top, r))
    if "noise_images" in inp.baselines:
        noise_f = inp.clip.encode_images(noise_images(len(inp.ids), seed=inp.seed))
        S = clipscore_matrix(noise_f, inp.concept_text_features["concepts"])
        inp.put("noise_images", "clipscore_top1", topr_mean(S, top, 1))
        inp.put("noise_images", f"clipscore_top{r}", topr_mean(S, top, r))
    if "gt_captions" in inp.baselines:
        flat = [(i, c) for i, cs in enumerate(inp.captions) for c in cs]
        if flat:
            S = clipscore_matrix(inp.image_features, inp.clip.encode_texts([c for _, c in flat]))
            owner = torch.tensor([i for i, _ in flat])
            per = torch.stack(
                [
                    S[i, owner == i].mean() if (owner == i).any() else torch.tensor(float("nan"))
                    for i in range(len(inp.ids))
                ]
            )
            inp.put("gt_captions", "clipscore_top1", per)
            inp.put("gt_captions", f"clipscore_top{r}", per)


def _bertscore(inp: EvalInputs) -> None:
    r, top, caps, bert, notes = inp.r, inp.top, inp.captions, inp.bert, inp.results.notes
    inp.results.bert_rescaled = bert.rescaled
    have = [i for i, c in enumerate(caps) if c]
    if len(have) < len(inp.ids):
        notes.append(f"BERTScore: {len(inp.ids) - len(have)} test samples have no caption and are left out")
    for row, ws in inp.rows.items():
        cands = [" ".join(ws[int(top[i, j])]) for i in have for j in range(r)]
        refs = [caps[i] for i in have for _ in range(r)]
        F = bert.f1(cands, refs).reshape(len(have), r)
        inp.put(row, "bertscore_top1", F[:, 0])
        inp.put(row, f"bertscore_top{r}", F.mean(1))
    if "gt_captions" in inp.baselines:
        multi = [i for i in have if len(caps[i]) >= 2]
        if multi:
            cands = [c for i in multi for c in caps[i]]
            refs = [caps[i][:j] + caps[i][j + 1 :] for i in multi for j in range(len(caps[i]))]
            F = bert.f1(cands, refs)
            owner = torch.tensor([i for i in multi for _ in caps[i]])
            per = torch.stack([F[owner == i].mean() for i in multi])
            inp.put("gt_captions", "bertscore_top1", per)
            inp.put("gt_captions", f"bertscore_top{r}", per)
        else:
            notes.append("BERTScore upper bound skipped: no test sample has two or more captions")


def _bert_summary(res) -> str | None:
    if res.bert_rescaled is False:
        return "- BERTScore is not baseline-rescaled (no baseline file given for the local encoder)"
    return None


def _mas_words(inp: EvalInputs) -> None:
    V = inp.V
    n_mas = inp.n_mas or inp.explanations.n_images or 5
    _, mas = V.topk(min(n_mas, V.shape[0]), dim=0)  # [n_mas, K]
    out = {}
    for row in inp.rows:
        per_concept = inp.text_scores(row).gather(0, mas).mean(0)
        inp.results.arrays[f"mas_words/{row}"] = per_concept
        out[row] = per_concept.mean().item()
    inp.results.mas_words = out


def _quality(inp: EvalInputs) -> None:
    from lmm_concepts.metrics.quality import dictionary_quality

    inp.results.quality = dictionary_quality(inp.dictionary, inp.Z.to(inp.dictionary.W_dec.device)).to_dict()


def _quality_summary(res) -> str | None:
    q = res.quality
    if not q:
        return None
    return (
        f"- dictionary on the test set: relative error {q['relative_error']:.4f}, L0 {q['l0']:.2f}, "
        f"mean activation {q['mean_activation']:.4f}, dead concepts {q['n_dead']}/{q['n_concepts']}"
    )


def _faithfulness(inp: EvalInputs) -> None:
    inp.results.faithfulness = faithfulness(
        inp.model, inp.explanations, inp.faithfulness_inputs, dictionary=inp.dictionary, seed=inp.seed
    ).to_dict()


def _fmt(v) -> str:
    """A score as results.md writes it (a dash for none or NaN)."""
    return "–" if v is None or (isinstance(v, float) and v != v) else f"{v:.4f}"


# ------------------------------------------------------------------------------------------------ the registry
METRIC_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add `metric`; it runs after those registered before it."""
    if metric.name in METRIC_REGISTRY:
        raise InputError(f"metric {metric.name!r} is already registered; choose another name")
    METRIC_REGISTRY[metric.name] = metric
    return metric


def _top_columns(kind: str) -> Callable[[int], tuple[str, ...]]:
    return lambda r: tuple(dict.fromkeys((f"{kind}_top1", f"{kind}_top{r}")))


# the order they run in, and in which their lines appear under the table of results.md
register_metric(
    Metric(
        "overlap",
        _overlap,
        summary=lambda res: (
            None
            if res.overlap is None
            else f"- overlap between concepts' words: {res.overlap:.4f} (lower is better)"
        ),
    )
)
register_metric(Metric("clipscore", _clipscore, frozenset({"codes", "clip"}), _top_columns("clipscore")))
register_metric(
    Metric(
        "mas_words",
        _mas_words,
        frozenset({"codes", "clip"}),
        summary=lambda res: (
            "- MAS vs words (CLIPScore): " + ", ".join(f"{k} {_fmt(v)}" for k, v in res.mas_words.items())
            if res.mas_words
            else None
        ),
    )
)
register_metric(Metric("quality", _quality, frozenset({"codes"}), summary=_quality_summary))
register_metric(
    Metric(
        "faithfulness",
        _faithfulness,
        frozenset({"model"}),
        summary=lambda res: faithfulness_line(res.faithfulness) if res.faithfulness else None,
    )
)
register_metric(
    Metric("bertscore", _bertscore, frozenset({"codes", "bert"}), _top_columns("bertscore"), _bert_summary)
)
