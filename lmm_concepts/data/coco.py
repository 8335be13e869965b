"""COCO with Karpathy's split file (`dataset_coco.json`) and the COCO image folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmm_concepts._io import read_json
from lmm_concepts.data.base import CaptionDataset
from lmm_concepts.errors import InputError, MissingInputError

KARPATHY_SPLITS = ("train", "restval", "val", "test")


class CocoKarpathy(CaptionDataset):
    """Images of one Karpathy split with their five raw captions.

    `image_root` is the COCO folder holding `train2014/`, `val2014/` (each image's `filepath` in the split file);
    a flat folder holding the files themselves works too. Sample ids are the COCO ids (`cocoid`).
    """

    def __init__(self, karpathy_json: str | os.PathLike, image_root: str | os.PathLike, split: str | None = "test"):
        path = Path(karpathy_json)
        if not path.is_file():
            raise MissingInputError(f"Karpathy split file not found: {path} (expected dataset_coco.json)")
        if split is not None and split not in KARPATHY_SPLITS:
            raise InputError(f"split must be one of {KARPATHY_SPLITS} or None (all), got {split!r}")
        data = read_json(path)
        if not isinstance(data, dict) or "images" not in data:
            raise InputError(f"{path} is not a Karpathy split file: it has no 'images' list")
        self.image_root = Path(image_root)
        if not self.image_root.is_dir():
            raise MissingInputError(f"image folder not found: {self.image_root}")
        self.split = split
        self.entries: list[dict[str, Any]] = [e for e in data["images"] if split is None or e.get("split") == split]
        self._check_unique_ids()

    def __len__(self) -> int:
        return len(self.entries)

    def sample_id(self, i: int) -> str:
        e = self.entries[i]
        return str(e.get("cocoid", e.get("imgid", e["filename"])))

    def _path(self, e: dict[str, Any]) -> Path:
        nested = self.image_root / e.get("filepath", "") / e["filename"]
        return nested if nested.exists() else self.image_root / e["filename"]

    def raw(self, i: int):
        e = self.entries[i]
        captions = [s["raw"] for s in e.get("sentences", [])]
        extras = {"split": e.get("split")}
        return self.sample_id(i), str(self._path(e)), captions, extras
