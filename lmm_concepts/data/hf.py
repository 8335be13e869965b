"""A Hugging Face `datasets` dataset saved to local disk (`Dataset.save_to_disk`), read with `load_from_disk`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmm_concepts.data.base import CaptionDataset, as_captions, sample_fingerprint
from lmm_concepts.errors import InputError, MissingInputError


class HFDiskCaptions(CaptionDataset):
    """Rows of a local HF dataset: an image column (`Image` feature, path or bytes), a caption column.

    `path` is a folder written by `save_to_disk` (read with `datasets.load_from_disk`) or a loaded `Dataset`.
    Images stay undecoded until a sample is read; other columns become per-sample extras. `split` picks one split
    when the folder holds a `DatasetDict`.
    """

    def __init__(
        self,
        path: str | os.PathLike | Any,
        *,
        split: str | None = None,
        image_column: str = "image",
        captions_column: str = "captions",
        id_column: str | None = None,
        image_root: str | os.PathLike | None = None,
    ):
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("reading a HF dataset needs the `datasets` package: pip install datasets") from exc
        if isinstance(path, (datasets.Dataset, datasets.DatasetDict)):
            ds = path  # already loaded
        elif not Path(path).exists():
            raise MissingInputError(f"no dataset saved at {path} (expected a folder written by save_to_disk)")
        else:
            ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split is None or split not in ds:
                raise InputError(f"{path} holds splits {list(ds)}: pass split= to choose one")
            ds = ds[split]
        for col in [image_column, captions_column, *([id_column] if id_column else [])]:
            if col not in ds.column_names:
                raise InputError(
                    f"{path}: no column {col!r} (columns: {ds.column_names}); pass image_column=/captions_column="
                    "/id_column= to name the right ones"
                )
        if isinstance(ds.features[image_column], datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))  # decode lazily, ourselves
        self.ds = ds
        self.image_column, self.captions_column, self.id_column = image_column, captions_column, id_column
        self.image_root = Path(image_root) if image_root is not None else None
        self._ids = [str(x) for x in ds[id_column]] if id_column else [str(i) for i in range(len(ds))]
        self._check_unique_ids()

    def __len__(self) -> int:
        return len(self.ds)

    def sample_id(self, i: int) -> str:
        return self._ids[i]

    def sample_ids(self) -> list[str]:
        return list(self._ids)

    def raw(self, i: int):
        return self._item(i, self.ds[i])

    def fingerprints(self):
        """As `CaptionDataset.fingerprints`, reading the table in blocks rather than row by row."""
        i = 0
        for block in self.ds.iter(batch_size=1024):
            for k in range(len(block[self.image_column])):
                sample_id, ref, captions, extras = self._item(i, {c: v[k] for c, v in block.items()})
                yield sample_id, sample_fingerprint(ref, captions, extras)
                i += 1

    def _item(self, i: int, row: dict[str, Any]):
        ref = row[self.image_column]
        if isinstance(ref, str) and self.image_root is not None and not Path(ref).is_absolute():
            ref = str(self.image_root / ref)
        extras = {k: v for k, v in row.items() if k not in (self.image_column, self.captions_column, self.id_column)}
        return self._ids[i], ref, as_captions(row[self.captions_column], f"row {i}"), extras
