"""`evaluate`: the paper's table for one set of explanations on a test store, with its baselines.

Rows (methods) × columns (metrics) in `EvaluationResults.scores`:
    concepts       each test image's r strongest concepts (codes of its representation), their grounded words
    random_words   the same concepts' slots filled with the words of random directions (same lens and filter)
    noise_images   the concepts' texts scored against uniform-noise images instead of the test images (CLIPScore)
    gt_captions    upper bound: CLIPScore of the image with its own captions; BERTScore of each caption against
                   the image's other captions (needs ≥ 2 captions)
Columns: clipscore_top1, clipscore_top{r}, bertscore_top1, bertscore_top{r} (means over test samples). CLIPScore's
text is "A photo is described by the words w1, w2, …"; BERTScore's candidate is the words joined by spaces, scored
against the image's captions (best over them). A concept with no words scores 0 on BERTScore.
Also: overlap (between concepts' word sets), mas_words (CLIPScore of each concept's most activating test images
with its words, against random words), quality (reconstruction / sparsity on the test set), faithfulness.

Saved as a folder: results.json (everything but per-sample arrays), results.md (the table), results.safetensors
(per-sample and per-concept arrays, e.g. "concepts/clipscore_top1" [n_test]).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from lmm_concepts._io import read_json, write_json, write_safetensors, write_text
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.grounding.explanations import concept_text
from lmm_concepts.grounding.ground import check_dictionary_layer, top_concepts
from lmm_concepts.grounding.store_access import as_store, encode_all, meta_get, pick_layer, store_matrix
from lmm_concepts.metrics.bertscore import as_bert
from lmm_concepts.metrics.clipscore import as_clip, clipscore_matrix, topr_mean
from lmm_concepts.metrics.faithfulness import faithfulness_line
from lmm_concepts.metrics.overlap import overlap
from lmm_concepts.metrics.sequences import StoreSequences

SCHEMA = "lmm_concepts.evaluation/1"
METRICS = ("clipscore", "bertscore", "overlap", "mas_words", "quality", "faithfulness")
BASELINES = ("random_words", "noise_images", "gt_captions")


@dataclass
class EvaluationResults:
    scores: dict[str, dict[str, float]]
    """method row -> metric column -> mean over test samples"""
    n_test: int
    r: int
    layer: str
    overlap: float | None = None
    mas_words: dict[str, float] | None = None
    quality: dict | None = None
    faithfulness: dict | None = None
    bert_rescaled: bool | None = None
    notes: list[str] = field(default_factory=list)
    arrays: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """per-sample / per-concept values, e.g. "concepts/clipscore_top1" [n_test], "mas_words/concepts" [K]"""

    def to_markdown(self) -> str:
        cols = sorted({c for row in self.scores.values() for c in row})
        lines = [f"# Evaluation ({self.n_test} test samples, layer {self.layer}, top-{self.r})", ""]
        if cols:
            lines += ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            for method, row in self.scores.items():
                lines.append(f"| {method} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
            lines.append("")
        if self.overlap is not None:
            lines.append(f"- overlap between concepts' words: {self.overlap:.4f} (lower is better)")
        if self.mas_words:
            lines.append(
                "- MAS vs words (CLIPScore): " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.mas_words.items())
            )
        if self.quality:
            q = self.quality
            lines.append(
                f"- dictionary on the test set: relative error {q['relative_error']:.4f}, L0 {q['l0']:.2f}, "
                f"mean activation {q['mean_activation']:.4f}, dead concepts {q['n_dead']}/{q['n_concepts']}"
            )
        if self.faithfulness:
            lines.append(faithfulness_line(self.faithfulness))
        if self.bert_rescaled is False:
            lines.append("- BERTScore is not baseline-rescaled (no baseline file given for the local encoder)")
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        meta = {"schema": SCHEMA, **{k: v for k, v in asdict(self).items() if k != "arrays"}}
        write_safetensors(path / "results.safetensors", {k: v.detach().float().clone() for k, v in self.arrays.items()})
        write_text(path / "results.md", self.to_markdown())
        write_json(path / "results.json", _finite(meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationResults:
        path = Path(path)
        if not (path / "results.json").is_file():
            raise MissingInputError(f"no results.json in {path}: give the folder written by EvaluationResults.save")
        meta = read_json(path / "results.json")
        if meta.pop("schema", None) != SCHEMA:
            raise InputError(f"{path / 'results.json'} is not an {SCHEMA} file")
        arrays = load_file(str(path / "results.safetensors")) if (path / "results.safetensors").is_file() else {}
        return cls(arrays=arrays, **meta)


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _finite(x):
    """JSON has no NaN: write None instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def noise_images(n: int, size: int = 224, seed: int = 0) -> list[Image.Image]:
    """Uniform RGB noise images (the noise-images baseline)."""
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8).numpy()
    return [Image.fromarray(a) for a in arr]


def encode_store_images(clip, store, ids: list, chunk: int = 256) -> Tensor:
    """CLIP image embeddings of a store's samples, loading `chunk` images at a time (bounded memory)."""
    return torch.cat([clip.encode_images(store.images(ids[i : i + chunk])) for i in range(0, len(ids), chunk)])


def _check_metrics(metrics: Sequence[str], baselines: Sequence[str]) -> None:
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise InputError(f"unknown metrics {bad}; choose from {METRICS}")
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise InputError(f"unknown baselines {bad}; choose from {BASELINES}")


def evaluate(
    explanations,
    test_store,
    clip=None,
    bert=None,
    metrics: Sequence[str] = ("clipscore", "bertscore", "overlap"),
    *,
    baselines: Sequence[str] = BASELINES,
    dictionary=None,
    r: int = 3,
    model=None,
    faithfulness_inputs: StoreSequences | None = None,
    n_mas: int | None = None,
    seed: int = 0,
    allow_layer_mismatch: bool = False,
) -> EvaluationResults:
    """Score `explanations` on `test_store` (see the module docstring for rows and columns).

    Args:
        clip: a ClipModel (`load_clip`) — needed for "clipscore" and "mas_words".
        bert: a BertModel (`load_bert`) — needed for "bertscore".
        dictionary: the fitted dictionary (default: the one kept by `ground`), to encode the test samples.
        r: the top-r column (the paper: 3); top-1 is always reported.
        model, faithfulness_inputs: for "faithfulness": the model and the test store's sequences
            (`metrics.sequences.store_sequences(model, test_store)`; see `lmm_concepts.metrics.faithfulness`).
        n_mas: most activating test images per concept for "mas_words" (default: explanations.n_images).
        allow_layer_mismatch: use a dictionary recorded as fitted on another hook than the test layer (said in
            `notes`); refused otherwise.
    """
    _check_metrics(metrics, baselines)
    test_store = as_store(test_store, "test_store")
    dictionary = explanations.paired(dictionary)  # None when absent; another fit's dictionary is refused
    needs_codes = {"clipscore", "bertscore", "quality", "mas_words"} & set(metrics)
    if needs_codes and dictionary is None:
        raise InputError(
            f"{sorted(needs_codes)} need the fitted dictionary to encode the test samples: pass dictionary=..., or "
            "load the explanations with Explanations.load(path, dictionary=...)"
        )
    if "clipscore" in metrics or "mas_words" in metrics:
        clip = as_clip(clip)
    if "bertscore" in metrics:
        bert = as_bert(bert)
    if "faithfulness" in metrics and (model is None or faithfulness_inputs is None):
        raise InputError(
            "faithfulness needs model=... and faithfulness_inputs=store_sequences(model, test_store) (the test "
            "store's sequences, from lmm_concepts.metrics.sequences)"
        )
    layer = pick_layer(test_store, explanations.layer)
    K = explanations.n_concepts
    if r > K:
        raise InputError(f"r={r} (--r) is more than the {K} concepts: choose r ≤ {K}")
    notes: list[str] = []
    if dictionary is not None and (mismatch := check_dictionary_layer(dictionary, layer, allow_layer_mismatch)):
        notes.append(mismatch)
    res = EvaluationResults(scores={}, n_test=0, r=r, layer=layer, notes=notes)
    if "overlap" in metrics:
        res.overlap = overlap(explanations.words())
    if not needs_codes and "faithfulness" not in metrics:
        return res

    Z = store_matrix(test_store, layer) if needs_codes else None
    if needs_codes:
        V = encode_all(dictionary, Z.to(dictionary.W_dec.device))
        res.n_test = V.shape[0]
        _, top = top_concepts(V, r)
    ids = list(test_store.sample_ids)
    words = explanations.words()
    rand_words = explanations.random_words or []
    if "random_words" in baselines and needs_codes and len(rand_words) != K:
        notes.append("these explanations hold no random-words baseline (ground them again to get one); row skipped")
    use_random = "random_words" in baselines and len(rand_words) == K
    rows = {"concepts": words, **({"random_words": rand_words} if use_random else {})}

    def put(method: str, col: str, per_sample: Tensor) -> None:
        res.scores.setdefault(method, {})[col] = per_sample.mean().item() if len(per_sample) else float("nan")
        res.arrays[f"{method}/{col}"] = per_sample

    if "clipscore" in metrics or "mas_words" in metrics:
        img_f = encode_store_images(clip, test_store, ids)
    if "clipscore" in metrics:
        for method, ws in rows.items():
            S = clipscore_matrix(img_f, clip.encode_texts([concept_text(w) for w in ws]))
            put(method, "clipscore_top1", topr_mean(S, top, 1))
            put(method, f"clipscore_top{r}", topr_mean(S, top, r))
        if "noise_images" in baselines:
            noise_f = clip.encode_images(noise_images(len(ids), seed=seed))
            S = clipscore_matrix(noise_f, clip.encode_texts([concept_text(w) for w in words]))
            put("noise_images", "clipscore_top1", topr_mean(S, top, 1))
            put("noise_images", f"clipscore_top{r}", topr_mean(S, top, r))
        if "gt_captions" in baselines:
            caps = [list(meta_get(test_store, i, "captions") or []) for i in range(len(ids))]
            flat = [(i, c) for i, cs in enumerate(caps) for c in cs]
            if flat:
                S = clipscore_matrix(img_f, clip.encode_texts([c for _, c in flat]))
                owner = torch.tensor([i for i, _ in flat])
                per = torch.stack([S[i, owner == i].mean() if (owner == i).any() else torch.tensor(float("nan"))
                                   for i in range(len(ids))])
                put("gt_captions", "clipscore_top1", per)
                put("gt_captions", f"clipscore_top{r}", per)

    if "bertscore" in metrics:
        res.bert_rescaled = bert.rescaled
        caps = [list(meta_get(test_store, i, "captions") or []) for i in range(len(ids))]
        have = [i for i, c in enumerate(caps) if c]
        if len(have) < len(ids):
            notes.append(f"BERTScore: {len(ids) - len(have)} test samples have no caption and are left out")
        for method, ws in rows.items():
            cands = [" ".join(ws[int(top[i, j])]) for i in have for j in range(r)]
            refs = [caps[i] for i in have for _ in range(r)]
            F = bert.f1(cands, refs).reshape(len(have), r)
            put(method, "bertscore_top1", F[:, 0])
            put(method, f"bertscore_top{r}", F.mean(1))
        if "gt_captions" in baselines:
            multi = [i for i in have if len(caps[i]) >= 2]
            if multi:
                cands = [c for i in multi for c in caps[i]]
                refs = [caps[i][:j] + caps[i][j + 1 :] for i in multi for j in range(len(caps[i]))]
                F = bert.f1(cands, refs)
                owner = torch.tensor([i for i in multi for _ in caps[i]])
                per = torch.stack([F[owner == i].mean() for i in multi])
                put("gt_captions", "bertscore_top1", per)
                put("gt_captions", f"bertscore_top{r}", per)
            else:
                notes.append("BERTScore upper bound skipped: no test sample has two or more captions")

    if "mas_words" in metrics:
        n_mas = n_mas or explanations.n_images or 5
        _, mas = V.topk(min(n_mas, V.shape[0]), dim=0)  # [n_mas, K]
        out = {}
        for method, ws in rows.items():
            S = clipscore_matrix(img_f, clip.encode_texts([concept_text(w) for w in ws]))  # [n, K]
            per_concept = S.gather(0, mas).mean(0)
            res.arrays[f"mas_words/{method}"] = per_concept
            out[method] = per_concept.mean().item()
        res.mas_words = out

    if "quality" in metrics:
        from lmm_concepts.metrics.quality import dictionary_quality

        res.quality = dictionary_quality(dictionary, Z.to(dictionary.W_dec.device)).to_dict()

    if "faithfulness" in metrics:
        from lmm_concepts.metrics.faithfulness import faithfulness

        res.faithfulness = faithfulness(model, explanations, faithfulness_inputs, dictionary=dictionary,
                                        seed=seed).to_dict()
    return res
