"""Captions in a JSONL or CSV file beside an image folder.

JSONL: one object per line, e.g. `{"id": ..., "image": "img/0001.png", "captions": [...], "attributes": {...}}`
(the synthetic world's format). CSV: a header row, one or more caption columns; rows sharing an id (or, without
an id column, an image) are one sample with several captions. Every other field is kept as a per-sample extra.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmm_concepts.data.base import CaptionDataset, as_captions
from lmm_concepts.errors import InputError, MissingInputError


def _resolve(root: Path, image: str) -> str:
    p = Path(image)
    return str(p if p.is_absolute() else root / p)


class _RowTable(CaptionDataset):
    """A caption table read into memory: `rows` holds (id, image path, captions, extras) per sample."""

    rows: list[tuple[str, str, list[str], dict[str, Any]]]

    def __len__(self) -> int:
        return len(self.rows)

    def sample_id(self, i: int) -> str:
        return self.rows[i][0]

    def raw(self, i: int):
        return self.rows[i]


class JsonlCaptions(_RowTable):
    """One JSON object per line with an image path (relative to `image_root`, default: the file's folder)."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        *,
        image_key: str = "image",
        captions_key: str = "captions",
        id_key: str | None = "id",
    ):
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"JSONL file not found: {path}")
        self.image_root = Path(image_root) if image_root is not None else path.parent
        self.rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n}: not valid JSON ({exc})") from None
                for key in (image_key, captions_key):
                    if key not in obj:
                        raise InputError(
                            f"{path}:{n}: no {key!r} field (fields: {sorted(obj)}); "
                            "pass image_key=/captions_key= to name the right ones"
                        )
                sample_id = obj[id_key] if id_key is not None and id_key in obj else len(self.rows)
                extras = {k: v for k, v in obj.items() if k not in (image_key, captions_key, id_key)}
                captions = as_captions(obj[captions_key], f"{path}:{n}")
                self.rows.append((str(sample_id), _resolve(self.image_root, obj[image_key]), captions, extras))
        self._check_unique_ids()


class CsvCaptions(_RowTable):
    """A CSV with a header: an image column, one or more caption columns, optionally an id column."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_root: str | os.PathLike | None = None,
        *,
        image_column: str = "image",
        caption_columns: Sequence[str] = ("caption",),
        id_column: str | None = None,
        delimiter: str = ",",
    ):
        path = Path(path)
        if not path.is_file():
            raise MissingInputError(f"CSV file not found: {path}")
        if isinstance(caption_columns, str):
            caption_columns = (caption_columns,)
        self.image_root = Path(image_root) if image_root is not None else path.parent
        groups: dict[str, list] = {}
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = reader.fieldnames or []
            for col in [image_column, *caption_columns, *([id_column] if id_column else [])]:
                if col not in header:
                    raise InputError(
                        f"{path}: no column {col!r} (columns: {header}); pass image_column=/caption_columns=/"
                        "id_column= to name the right ones"
                    )
            used = {image_column, *caption_columns, id_column}
            for row in reader:
                key = row[id_column] if id_column else row[image_column]
                captions = [row[c] for c in caption_columns if row[c]]
                if key in groups:
                    groups[key][2].extend(captions)
                else:
                    extras = {k: v for k, v in row.items() if k not in used}
                    groups[key] = [key, _resolve(self.image_root, row[image_column]), captions, extras]
        self.rows = [tuple(g) for g in groups.values()]
