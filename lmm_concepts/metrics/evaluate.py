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

from safetensors.torch import load_file
from torch import Tensor

from lmm_concepts._io import read_json, write_json, write_safetensors, write_text
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.grounding.ground import check_dictionary_layer
from lmm_concepts.grounding.store_access import as_store, pick_layer
from lmm_concepts.metrics.bertscore import as_bert
from lmm_concepts.metrics.clipscore import as_clip
from lmm_concepts.metrics.registry import METRIC_REGISTRY, EvalInputs, _fmt
from lmm_concepts.metrics.sequences import StoreSequences

SCHEMA = "lmm_concepts.evaluation/1"
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
        present = {c for row in self.scores.values() for c in row}
        declared = [c for m in METRIC_REGISTRY.values() for c in m.columns(self.r)]  # each metric's, in order
        cols = [c for c in dict.fromkeys(declared) if c in present] + sorted(present - set(declared))
        lines = [f"# Evaluation ({self.n_test} test samples, layer {self.layer}, top-{self.r})", ""]
        if cols:
            lines += ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            for method, row in self.scores.items():
                lines.append(f"| {method} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
            lines.append("")
        lines += [line for m in METRIC_REGISTRY.values() if (line := m.summary(self)) is not None]
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


def _finite(x):
    """JSON has no NaN: write None instead."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _check_metrics(metrics: Sequence[str], baselines: Sequence[str]) -> None:
    bad = [m for m in metrics if m not in METRIC_REGISTRY]
    if bad:
        raise InputError(f"unknown metrics {bad}; choose from {tuple(METRIC_REGISTRY)}")
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

    The metrics are objects of `metrics.registry` (run in its order); inputs they share are computed once.
    """
    _check_metrics(metrics, baselines)
    chosen = [m for m in METRIC_REGISTRY.values() if m.name in metrics]
    needs = {need for m in chosen for need in m.needs}
    test_store = as_store(test_store, "test_store")
    dictionary = explanations.paired(dictionary)  # None when absent; another fit's dictionary is refused
    if "codes" in needs and dictionary is None:
        needing = sorted(m.name for m in chosen if "codes" in m.needs)
        raise InputError(
            f"{needing} need the fitted dictionary to encode the test samples: pass dictionary=..., or "
            "load the explanations with Explanations.load(path, dictionary=...)"
        )
    if "clip" in needs:
        clip = as_clip(clip)
    if "bert" in needs:
        bert = as_bert(bert)
    if "model" in needs and (model is None or faithfulness_inputs is None):
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
    inputs = EvalInputs(explanations, test_store, layer, r, baselines, res, dictionary=dictionary, clip=clip,
                        bert=bert, model=model, faithfulness_inputs=faithfulness_inputs, n_mas=n_mas, seed=seed)
    if "codes" in needs:
        res.n_test = inputs.V.shape[0]
        if "random_words" in baselines and "random_words" not in inputs.rows:
            notes.append("these explanations hold no random-words baseline (ground them again to get one); row "
                         "skipped")
    for metric in chosen:
        metric.compute(inputs)
    return res
