"""`lmm-concepts extract`: the command-line face of `lmm_concepts.extract`, with the same options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.models.load import ModelSpec

# The readers and `extract` (torch) are imported when the command runs: `extract --help` imports this module only.


@dataclass
class DataSpec:
    """Which image-caption dataset to read."""

    data: str = ""
    """dataset_coco.json (Karpathy), a .jsonl or .csv file, or a folder written by datasets.save_to_disk."""
    images: str | None = None
    """Image folder (default: the data file's folder; for COCO, the folder holding train2014/ and val2014/)."""
    format: str = "auto"
    """auto, coco, jsonl, csv or hf."""
    split: str | None = None
    """COCO: Karpathy split (default test); HF: split of a DatasetDict."""

    def load(self):
        from lmm_concepts.data import CocoKarpathy, CsvCaptions, HFDiskCaptions, JsonlCaptions

        path = Path(self.data)
        if not self.data or not path.exists():
            raise MissingInputError(f"--data {self.data!r}: no such file or folder")
        fmt = self.format
        if fmt == "auto":
            fmt = "hf" if path.is_dir() else {".jsonl": "jsonl", ".csv": "csv", ".json": "coco"}.get(path.suffix, "")
            if not fmt:
                raise InputError(f"cannot tell the format of {path}: pass --format coco|jsonl|csv|hf")
        if fmt == "coco":
            return CocoKarpathy(path, self.images or path.parent, split=self.split or "test")
        if fmt == "jsonl":
            return JsonlCaptions(path, self.images)
        if fmt == "csv":
            return CsvCaptions(path, self.images)
        if fmt == "hf":
            return HFDiskCaptions(path, split=self.split, image_root=self.images)
        raise InputError(f"unknown --format {fmt!r}: choose auto, coco, jsonl, csv or hf")


@dataclass
class ExtractConfig:
    """Caption a dataset and store the word's representations (see lmm_concepts.extract)."""

    token: str = ""
    """The word of interest (whole word, case-insensitive)."""
    out: str = "runs/extract"
    """Output folder of the store; rerunning the same command resumes an interrupted run."""
    layers: list[str] = field(default_factory=lambda: ["final"])
    """Layer indices (negative from the end), 'final' (after the final norm) or hook names."""
    position: str = "predicts"
    """'predicts' (position whose logits predict the word; the reference) or 'at' (the word's own position)."""
    batch_size: int = 16
    """Images per batch."""
    max_new_tokens: int = 20
    """Length limit of the generated captions."""
    prompt: str | None = None
    """Captioning prompt (default: the model's)."""
    plural: bool = False
    """Also accept plural forms of the word."""
    dtype: str = "float32"
    """Storage dtype: float32, float16 or bfloat16."""
    num_workers: int = 0
    """DataLoader workers decoding images."""
    overwrite: bool = False
    """Replace a store of another extraction in --out (only that store's own files are deleted)."""
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)


def run(cfg: ExtractConfig) -> None:
    from lmm_concepts.extraction.extract import extract

    if not cfg.token:
        raise InputError("--token is required (the word of interest, e.g. --token dog)")
    dataset = cfg.data.load()  # before the (slow) model: a wrong path fails at once
    model = cfg.model.load()
    store = extract(
        model, dataset, cfg.token, cfg.layers, cfg.out, position=cfg.position, batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens, prompt=cfg.prompt, plural=cfg.plural, dtype=cfg.dtype,
        num_workers=cfg.num_workers, overwrite=cfg.overwrite,
    )  # fmt: skip
    funnel = ", ".join(f"{k} {v}" for k, v in store.funnel.items())
    print(f"{store.path}: {len(store)} samples × {len(store.layers)} layers ({funnel})")
