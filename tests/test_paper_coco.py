"""tutorials/paper_coco.py, the paper's COCO experiment, run from its YAML config on a tiny stand-in: a random
LLaVA-shaped checkpoint, generated images in a Karpathy split file, tiny local CLIP and BERT folders."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import yaml

from tests._coco_standin import save_standin_llava, write_karpathy
from tests._ground_fixtures import tiny_bert, tiny_clip_folder

SCRIPT = Path(__file__).resolve().parent.parent / "tutorials" / "paper_coco.py"


def test_paper_coco_runs_from_its_config_on_a_tiny_standin(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_standin_llava(Path("llava"))
    write_karpathy(Path("coco"), n_train=30, n_test=8)
    tiny_clip_folder(Path("clip"))
    tiny_bert(Path("bert"))
    # the shipped config, with its paths pointed at the stand-in: every other setting is the paper's
    cfg = yaml.safe_load((SCRIPT.parent / "paper_coco.yaml").read_text())
    assert (cfg["word"], cfg["n_concepts"], cfg["l1"]) == ("dog", 20, 1.0)
    cfg.update(karpathy_json="coco/dataset_coco.json", image_root="coco", out="out", clip="clip", bert="bert",
               bert_num_layers=2, batch_size=8, max_new_tokens=8)
    cfg["model"].update(path="llava", dtype="float32", device="cpu")
    Path("cfg.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--config_path", "cfg.yaml"])
    runpy.run_path(str(SCRIPT), run_name="__main__")

    results = json.loads(Path("out/results.json").read_text())
    assert set(results["methods"]) == {"semi_nmf", "pca", "kmeans", "simple"}
    for m in results["methods"].values():
        for key in ("overlap", "clipscore_top1", "clipscore_top3", "bertscore_top1", "bertscore_top3"):
            assert isinstance(m[key], float), key
    assert results["n_train"] >= 20 and results["settings"]["n_concepts"] == 20
    assert all(Path(f"out/evaluation/{m}/results.safetensors").is_file() for m in results["methods"])
    html = Path("out/report.html").read_text()
    assert "data:image/png;base64," in html and "BERTScore top-1" in html
