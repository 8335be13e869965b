"""Reproduce the paper's COCO experiment (Parekh et al., 2024, Table 1) from local files, driven by a config.

    python tutorials/paper_coco.py --config_path tutorials/paper_coco.yaml [--out runs/paper_coco] [...]

What it runs, as in the paper: the word "dog" on the Karpathy train split (extraction keeps the images whose
ground-truth *and* generated captions contain it), K = 20 concepts per method (Semi-NMF with the reference code's
l1 = 1, i.e. the paper's lambda = 2; PCA, KMeans, Simple as baselines), grounding with 15 words and 5 most
activating samples, and the paper's metrics on the Karpathy test split: CLIPScore and BERTScore of each test
image's top-1 / top-3 concepts, and the overlap between concepts, with the random-words and ground-truth-caption
baselines. Writes `<out>/results.json`, `<out>/panels.json` and the self-contained `<out>/report.html`.

Everything loads from local paths (no network): the LMM (a LLaVA-1.5 folder written by HF `save_pretrained`, or
DePALM parts: an LLM folder, an open_clip vision tower + weights, a trained connector), an open_clip model for
CLIPScore, and optionally a local HF encoder for BERTScore (left out if not given, and said so).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import simple_parsing
import torch

import lmm_concepts as lc
from lmm_concepts.demo.findings import paper_findings
from lmm_concepts.report import Panels, write_report
from lmm_concepts.report.build import collect_thumbnails, method_panels


@dataclass
class ModelConfig:
    """Which LMM to explain, from local files."""

    kind: str = "llava"
    """"llava" (a local LLaVA-1.5 folder) or "depalm" (an LLM folder + an open_clip vision tower + a connector)"""
    path: str = ""
    """llava: the folder written by LlavaForConditionalGeneration.save_pretrained"""
    llm: str = ""
    """depalm: the LLM's local HF folder (OPT in the paper)"""
    vision: str = "ViT-L-14"
    """depalm: the open_clip architecture of the vision tower"""
    vision_weights: str = ""
    """depalm: the vision tower's local weights file"""
    connector: str = ""
    """depalm: the trained connector (safetensors)"""
    dtype: str = "float16"
    """weights dtype: float32, float16 or bfloat16"""
    device: str = "cuda"
    """torch device"""


@dataclass
class PaperCocoConfig:
    """The paper's COCO experiment; every path is local."""

    karpathy_json: str = "data/coco/dataset_coco.json"
    """Karpathy's split file"""
    image_root: str = "data/coco"
    """the COCO folder holding train2014/ and val2014/"""
    out: str = "runs/paper_coco"
    """output folder"""
    model: ModelConfig = field(default_factory=ModelConfig)
    clip: str = "models/clip"
    """CLIPScore model: a local open_clip folder (open_clip_config.json + weights)"""
    clip_checkpoint: str = ""
    """or: `clip` names an open_clip architecture and this is its weights file"""
    bert: str = ""
    """BERTScore encoder: a local HF folder ("" leaves BERTScore out)"""
    bert_num_layers: int = 9
    """the encoder layer BERTScore reads (needed for a local encoder; bert-score's table: 17 for roberta-large)"""
    word: str = "dog"
    """the token of interest"""
    n_concepts: int = 20
    """K"""
    l1: float = 1.0
    """Semi-NMF l1 (the reference code's alpha = 1; the paper's lambda = 2 * l1)"""
    layer: str = "final"
    """where representations are read: "final" (after the last norm, as the reference code) or a block index"""
    methods: list[str] = field(default_factory=lambda: ["semi_nmf", "pca", "kmeans", "simple"])
    """the paper's Table 1 methods"""
    train_split: str = "train"
    """Karpathy split the concepts are learned from"""
    test_split: str = "test"
    """Karpathy split the metrics are computed on"""
    max_images: int = 0
    """read at most this many images of each split (0: all)"""
    n_words: int = 15
    n_images: int = 5
    batch_size: int = 16
    max_new_tokens: int = 30
    plural: bool = False
    """also keep captions with the plural ("dogs"); the paper matches the singular only"""
    seed: int = 0
    overwrite: bool = False
    """replace the extraction stores in `out`"""


def load_model(cfg: ModelConfig):
    if cfg.kind == "llava":
        return lc.HookedLMM.llava(cfg.path, dtype=getattr(torch, cfg.dtype), device=cfg.device)
    if cfg.kind == "depalm":
        return lc.HookedLMM.depalm(llm=cfg.llm, vision=cfg.vision, vision_weights=cfg.vision_weights or None,
                                   connector=cfg.connector or None, dtype=getattr(torch, cfg.dtype), device=cfg.device)
    raise SystemExit(f"model.kind must be 'llava' or 'depalm', got {cfg.kind!r}")


def make_method(name: str, cfg: PaperCocoConfig, device: str):
    factories = {
        "semi_nmf": lambda: lc.SemiNMF(cfg.n_concepts, l1=cfg.l1, seed=cfg.seed, device=device),
        "pca": lambda: lc.PCA(cfg.n_concepts, device=device),
        "kmeans": lambda: lc.KMeans(cfg.n_concepts, seed=cfg.seed, device=device),
        "simple": lambda: lc.Simple(cfg.n_concepts, device=device),
    }
    if name not in factories:
        raise SystemExit(f"unknown method {name!r}; choose among {', '.join(factories)}")
    return factories[name]()


def dataset(cfg: PaperCocoConfig, split: str):
    data = lc.CocoKarpathy(cfg.karpathy_json, cfg.image_root, split=split)
    if cfg.max_images:
        data.entries = data.entries[: cfg.max_images]
    return data


def main(cfg: PaperCocoConfig) -> dict:
    from lmm_concepts.metrics import evaluate, load_bert, load_clip

    t0 = time.perf_counter()
    out = Path(cfg.out)
    model = load_model(cfg.model)
    layer = int(cfg.layer) if cfg.layer.lstrip("-").isdigit() else cfg.layer
    stores = {
        split: lc.extract(model, dataset(cfg, split), token=cfg.word, layers=[layer], out=out / "reps" / split,
                          batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, plural=cfg.plural,
                          overwrite=cfg.overwrite)
        for split in (cfg.train_split, cfg.test_split)
    }
    train, test = stores[cfg.train_split], stores[cfg.test_split]
    clip = load_clip(cfg.clip, checkpoint=cfg.clip_checkpoint or None, device=cfg.model.device)
    bert = load_bert(cfg.bert, num_layers=cfg.bert_num_layers, device=cfg.model.device) if cfg.bert else None
    metrics = ["clipscore", "overlap"] + (["bertscore"] if bert is not None else [])
    results: dict = {"word": cfg.word, "layer": cfg.layer, "model": cfg.model.path or cfg.model.llm,
                     "n_train": len(train), "n_test": len(test), "methods": {}, "settings": asdict(cfg),
                     "funnel": {s: [[k.replace("_", " "), int(v)] for k, v in st.funnel.items()] for s, st in stores.items()}}
    if bert is None:
        results["notes"] = ["BERTScore left out: no local encoder given (config field `bert`)"]
    panels = []
    Z_train, Z_test = train.layer(layer), test.layer(layer)
    for name in cfg.methods:
        dico = make_method(name, cfg, cfg.model.device).fit(Z_train)
        expl = lc.ground(model, dico, train, n_words=cfg.n_words, n_images=cfg.n_images, layer=layer)
        expl.save(out / "explanations" / name)
        scores = evaluate(expl, test, clip=clip, bert=bert, metrics=metrics, r=3, seed=cfg.seed)
        scores.save(out / "evaluation" / name)  # the table, plus per-image scores (results.safetensors)
        row = scores.scores.get("concepts", {})
        results["methods"][name] = {"overlap": scores.overlap, **{k: v for k, v in row.items()},
                                    "baselines": {k: v for k, v in scores.scores.items() if k != "concepts"}}
        panels.append(method_panels(name, expl, dico.encode(Z_train).cpu(), dico.encode(Z_test).cpu(),
                                    test.sample_ids, test.metadata))
    results["findings"] = paper_findings(results["methods"], recovery=False)
    results["timings_s"] = {"total": round(time.perf_counter() - t0, 1)}
    write_report(out, results, Panels(panels, collect_thumbnails(panels, [train, test])))
    print(f"wrote {out / 'report.html'} and {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main(simple_parsing.parse(PaperCocoConfig, args=sys.argv[1:], add_config_path_arg=True))
