"""Sweeps: the paper's layer ablation (extraction, fit, grounding and metrics per layer) and the same against K.

Each point of a sweep is fitted, grounded and evaluated, and, when `out` is given, saved under `out/<point>/`
(`explanations/`, `results/`) as soon as it is done; a rerun with the same `out` loads finished points instead of
recomputing them, so an interrupted sweep resumes. The table (`SweepResults`) holds one row per point:
the point (layer or K), reconstruction and sparsity on train and test, and every evaluation number
("concepts/clipscore_top1", …, "overlap").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from lmm_concepts._io import read_json, write_json, write_text
from lmm_concepts.grounding.ground import ground
from lmm_concepts.grounding.store_access import pick_layer, store_matrix
from lmm_concepts.metrics.evaluate import EvaluationResults, evaluate
from lmm_concepts.metrics.quality import dictionary_quality, seed_stability

SCHEMA = "lmm_concepts.sweep/1"


@dataclass
class SweepResults:
    kind: str
    """"layer" or "k\""""
    rows: list[dict] = field(default_factory=list)
    """one row per point: {"layer" or "k": …, "train/relative_error": …, "test/l0": …, "concepts/clipscore_top1": …}"""

    def column(self, name: str) -> list:
        return [row.get(name) for row in self.rows]

    def to_markdown(self) -> str:
        cols = [c for c in dict.fromkeys(c for row in self.rows for c in row) if c != self.kind]
        lines = [f"# Sweep over {self.kind}", "", f"| {self.kind} | " + " | ".join(cols) + " |"]
        lines.append("|---" * (len(cols) + 1) + "|")
        for row in self.rows:
            cells = [_fmt(row.get(c)) for c in cols]
            lines.append(f"| {row[self.kind]} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        write_json(path / "sweep.json", {"schema": SCHEMA, **asdict(self)})
        write_text(path / "sweep.md", self.to_markdown())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SweepResults:
        meta = read_json(Path(path) / "sweep.json")
        if meta.pop("schema", None) != SCHEMA:
            raise ValueError(f"{path} does not hold an {SCHEMA} file")
        return cls(**meta)


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _row(point_key: str, point, train_q, test_q, res: EvaluationResults) -> dict:
    row = {point_key: point}
    for prefix, q in (("train", train_q), ("test", test_q)):
        for k in ("relative_error", "l0", "mean_activation", "n_dead"):
            row[f"{prefix}/{k}"] = q[k]
    for method, cols in res.scores.items():
        for col, v in cols.items():
            row[f"{method}/{col}"] = v
    if res.overlap is not None:
        row["overlap"] = res.overlap
    if res.mas_words:
        for method, v in res.mas_words.items():
            row[f"mas_words/{method}"] = v
    if res.faithfulness:
        row["faithfulness/mean_drop"] = res.faithfulness["mean_drop"]
        row["faithfulness/mean_random_drop"] = res.faithfulness["mean_random_drop"]
    return row


def _point(model, make_dictionary, train, test, layer, point_key, point, out, ground_kw, eval_kw, n_seeds=1) -> dict:
    folder = Path(out) / f"{point_key}={point}" if out is not None else None
    if folder is not None and (folder / "row.json").is_file():
        return read_json(folder / "row.json")  # finished earlier: resume
    Z = store_matrix(train, layer)
    dictionary = make_dictionary().fit(Z)
    expl = ground(model, dictionary, train, layer=layer, **ground_kw)
    res = evaluate(expl, test, dictionary=dictionary, **eval_kw)
    train_q = dictionary_quality(dictionary, Z.to(dictionary.W_dec.device)).to_dict()
    test_q = dictionary_quality(dictionary, store_matrix(test, pick_layer(test, layer)).to(dictionary.W_dec.device))
    row = _row(point_key, point, train_q, test_q.to_dict(), res)
    if n_seeds > 1:  # refit with other seeds: mean Hungarian-matched cosine to the first fit
        others = [make_dictionary(seed=s).fit(Z) for s in range(1, n_seeds)]
        row["seed_stability"] = seed_stability([dictionary, *others])
    if folder is not None:
        expl.save(folder / "explanations")
        res.save(folder / "results")
        write_json(folder / "row.json", row)
    return row


def _eval_kw(clip, bert, metrics, r, model, faithfulness_inputs) -> dict:
    return dict(clip=clip, bert=bert, metrics=list(metrics), r=r, model=model, faithfulness_inputs=faithfulness_inputs)


def k_sweep(
    model,
    train,
    test,
    ks: Sequence[int],
    make_dictionary: Callable[[int], object],
    *,
    layer: str | int | None = None,
    clip=None,
    bert=None,
    metrics: Sequence[str] = ("overlap",),
    r: int = 3,
    n_words: int = 15,
    n_images: int = 5,
    lens: str | None = None,
    out: str | os.PathLike | None = None,
    faithfulness_inputs=None,
    n_seeds: int = 1,
    progress: bool = True,
) -> SweepResults:
    """Fit `make_dictionary(K)` on `train`'s layer for each K, ground it, evaluate it on `test`.

    Example: `lc.k_sweep(model, train, test, [5, 10, 20], lambda K, seed=0: lc.SemiNMF(K, l1=1.0, seed=seed))`.
    With `n_seeds > 1`, each K is also fitted with `make_dictionary(K, seed=s)` for s = 1 … n_seeds − 1 and the
    row gets "seed_stability" (mean Hungarian-matched cosine between the fits).
    """
    if not ks:
        raise ValueError("ks is empty: give the numbers of concepts to try, e.g. [5, 10, 20]")
    layer = pick_layer(train, layer)
    ground_kw = dict(n_words=n_words, n_images=n_images, lens=lens)
    eval_kw = _eval_kw(clip, bert, metrics, r, model, faithfulness_inputs)
    rows = [
        _point(model, lambda K=K, **kw: make_dictionary(K, **kw), train, test, layer, "k", K, out, ground_kw,
               {**eval_kw, "r": min(r, K)}, n_seeds)
        for K in tqdm(list(ks), desc="K sweep", disable=not progress)
    ]
    res = SweepResults("k", rows)
    if out is not None:
        res.save(out)
    return res


def layer_sweep(
    model,
    train,
    test,
    layers: Sequence[str | int],
    make_dictionary: Callable[[], object],
    *,
    token: str | None = None,
    clip=None,
    bert=None,
    metrics: Sequence[str] = ("overlap",),
    r: int = 3,
    n_words: int = 15,
    n_images: int = 5,
    out: str | os.PathLike | None = None,
    extract_kw: dict | None = None,
    progress: bool = True,
) -> SweepResults:
    """The paper's layer ablation: per layer, fit `make_dictionary()` on `train`, ground, evaluate on `test`.

    `train` / `test` are RepresentationStores holding every layer, or datasets: then both are extracted first
    (`lmm_concepts.extract(model, data, token=token, layers=layers, out=out/"train"|"test", **extract_kw)`,
    resumable). The lens follows each layer ("raw" after the final norm, "ln_final" before it).
    """
    if not layers:
        raise ValueError("layers is empty: give the layers to compare, e.g. [0, 4, 8, 'final']")
    stores = []
    for name, data in (("train", train), ("test", test)):
        if hasattr(data, "layer") and hasattr(data, "layers"):
            stores.append(data)
            continue
        if token is None or out is None:
            raise ValueError(f"{name} is a dataset: give token=... and out=... so it can be extracted first")
        from lmm_concepts.extraction import extract

        stores.append(extract(model, data, token=token, layers=list(layers), out=Path(out) / name, **(extract_kw or {})))
    train, test = stores
    ground_kw = dict(n_words=n_words, n_images=n_images, lens=None)
    eval_kw = _eval_kw(clip, bert, metrics, r, model, None)
    rows = []
    for layer in tqdm(list(layers), desc="layer sweep", disable=not progress):
        name = pick_layer(train, layer)
        rows.append(_point(model, make_dictionary, train, test, name, "layer", name, out, ground_kw, eval_kw))
    res = SweepResults("layer", rows)
    if out is not None:
        res.save(out)
    return res
