"""`RepresentationStore`: token-of-interest representations on disk, one `[M, d_model]` matrix per layer.

Layout of a store folder:

    manifest.json              provenance (model, layers, word, prompt, position rule, versions) and `complete`
    layers/<hook>.safetensors  one tensor "activations" [M, d_model] per hook point (after completion)
    metadata.jsonl             one row per kept sample, in the row order of every layer matrix
    rejections.jsonl           one row per rejected image: {sample_id, reason, detail}
    images/                    copies of kept images that came without a file (in-memory or HF datasets)
    parts/<batch>/             while running: per-batch shards and `batch.json` (the batch's commit record)
    .lock                      while running: the writer's lock (pid, host), see `lock.py`

Readers refuse an incomplete store unless `allow_incomplete=True`; an incomplete store is read from its parts.
Other stages read a store through its public methods only: `layer(name)` (the matrix, memory-mapped), `rows(name)`
(a row source for streamed fits, see `dictionary.streaming`), `metadata`, `images(ids)`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from lmm_concepts._io import read_json
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.extraction.shards import TENSOR_KEY, read_mmap, store_dtype
from lmm_concepts.models.interface import FINAL_HOOK  # noqa: F401  (the hook of layer "final")
from lmm_concepts.models.layers import missing_layer, resolve_layer

MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
REJECTIONS = "rejections.jsonl"
LAYERS_DIR = "layers"
PARTS_DIR = "parts"
IMAGES_DIR = "images"
BATCH_RECORD = "batch.json"
STORE_FORMAT = "lmm-concepts/representation-store"
#: Reasons an image is rejected, in funnel order.
REASONS = ("unreadable", "not_in_captions", "not_generated")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        try:
            return [json.loads(line) for line in f if line.strip()]
        except ValueError as err:
            raise InputError(f"{path} is damaged ({err}): the store must be extracted again") from None


def _read_shard(path: Path) -> Tensor:
    try:
        return load_file(str(path))[TENSOR_KEY]
    except Exception as err:  # safetensors raises its own error type, without the file's name
        raise InputError(f"{path} is damaged ({err}): delete its batch folder and rerun the extraction") from None


def committed_batches(root: Path) -> list[Path]:
    """Batch folders under parts/ that were written whole, in batch order, up to the first gap."""
    out = []
    k = 0
    while (root / PARTS_DIR / f"{k:06d}" / BATCH_RECORD).exists():
        out.append(root / PARTS_DIR / f"{k:06d}")
        k += 1
    return out


class RepresentationStore:
    """Read access to an extraction's results. Open with `RepresentationStore.open(path)`."""

    def __init__(self, path: str | os.PathLike, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | os.PathLike, *, allow_incomplete: bool = False) -> RepresentationStore:
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise MissingInputError(
                f"no representation store at {path} (no {MANIFEST}); create one with lmm_concepts.extract "
                "(lmm-concepts extract)"
            )
        try:
            manifest = read_json(path / MANIFEST)
        except ValueError as err:
            raise InputError(f"{path / MANIFEST} is not valid JSON ({err}): the store must be extracted again") from None
        if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
            raise InputError(f"{path / MANIFEST} is not a representation store manifest: give a store's folder")
        if not manifest.get("complete") and not allow_incomplete:
            n = len(committed_batches(path))
            raise RuntimeError(
                f"the store at {path} is incomplete ({n} batches written): rerun the same extract call to finish it, "
                "or pass allow_incomplete=True to read what is there"
            )
        return cls(path, manifest)

    # ---------------------------------------------------------------- description
    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def layers(self) -> list[str]:
        """Hook names of the stored layers, in the order they were requested."""
        return list(self.manifest["layers"])

    @property
    def word(self) -> str:
        return self.manifest["word"]

    def __len__(self) -> int:
        return len(self.metadata)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"RepresentationStore({str(self.path)!r}, word={self.word!r}, n={len(self)}, layers={self.layers}, {state})"

    # ---------------------------------------------------------------- tensors
    def hook_name(self, layer: int | str) -> str:
        """The stored hook name of `layer` (a block index, "final" or a hook name; see `models.layers`)."""
        name = resolve_layer(layer, self.manifest["model"]["n_layers"])
        if name not in self.layers:
            raise KeyError(missing_layer(layer, name, self.layers, "this store"))
        return name

    def layer(self, layer: int | str) -> Float[Tensor, "M d_model"]:
        """The `[M, d_model]` matrix of one layer ("final", an index, or a hook name); memory-mapped when complete."""
        name = self.hook_name(layer)
        merged = self.path / LAYERS_DIR / f"{name}.safetensors"
        if self.complete and merged.exists():
            return self._check_rows(read_mmap(merged), merged)
        if self.complete:
            raise InputError(f"{merged} is missing from the complete store at {self.path}: extract it again")
        d = self.manifest["model"]["d_model"]
        chunks = [_read_shard(b / f"{name}.safetensors")
                  for b in committed_batches(self.path) if (b / f"{name}.safetensors").exists()]
        dtype = store_dtype(self.manifest["dtype"])
        return torch.cat(chunks) if chunks else torch.empty(0, d, dtype=dtype)

    def rows(self, layer: int | str | None = None) -> LayerRows:
        """One layer of this complete store as a row source (`n_rows`, `d`, `dtype`, `read(start, stop)`), for
        learners that stream their data (`OnlineSemiNMF`); `layer` may be left out when the store holds one."""
        return LayerRows(self, layer)

    def _check_rows(self, rows, source: Path):
        """`rows` (a layer matrix or the metadata table), if a complete store's manifest counts as many (a damaged
        store is named rather than read out of step)."""
        expected = self.manifest.get("n_kept")
        if self.complete and isinstance(expected, int) and len(rows) != expected:
            raise InputError(
                f"{source} holds {len(rows)} rows but {self.path / MANIFEST} counts {expected} kept samples: the "
                f"store at {self.path} is damaged; extract it again (overwrite=True / --overwrite true)"
            )
        return rows

    # ---------------------------------------------------------------- tables
    def _batch_records(self, key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for b in committed_batches(self.path):
            rows.extend(read_json(b / BATCH_RECORD)[key])
        return rows

    @cached_property
    def metadata(self) -> list[dict[str, Any]]:
        """One dict per row of every layer matrix, in row order.

        Fields: `sample_id`, `image_path` (absolute, or relative to the store when `image_in_store`), `captions`
        (ground truth), `generated` (the caption), `position` (index into the full sequence: visual tokens counted,
        left padding not), `generated_index` (the word's first sub-token among the generated tokens), `token_id`,
        `token_ids` (all its sub-tokens), `token_str`, `matched` (the surface form), then the dataset's extra fields
        (e.g. `attributes`; renamed `data_<name>` on a clash).
        """
        if self.complete:
            return self._check_rows(read_jsonl(self.path / METADATA), self.path / METADATA)
        return self._batch_records("kept")

    @cached_property
    def rejections(self) -> list[dict[str, Any]]:
        """One dict per rejected image: sample_id, reason (unreadable | not_in_captions | not_generated), detail."""
        if self.complete:
            return read_jsonl(self.path / REJECTIONS)
        return self._batch_records("rejected")

    @property
    def sample_ids(self) -> list[str]:
        return [m["sample_id"] for m in self.metadata]

    @property
    def funnel(self) -> dict[str, int]:
        """How many images entered, were rejected for each reason (in the order the rule tests them), were kept."""
        counts = Counter(r["reason"] for r in self.rejections)
        kept = len(self.metadata)
        out = {"images": kept + sum(counts.values())}
        out.update({reason: counts.get(reason, 0) for reason in REASONS})
        out["kept"] = kept
        return out

    # ---------------------------------------------------------------- images
    def image_path(self, sample_id: str) -> Path:
        row = self._by_id.get(str(sample_id))
        if row is None:
            raise KeyError(f"sample {sample_id!r} is not among this store's kept samples")
        if row.get("image_path") is None:
            raise FileNotFoundError(f"sample {sample_id!r} has no stored image")
        p = Path(row["image_path"])
        return self.path / p if row.get("image_in_store") else p

    @cached_property
    def _by_id(self) -> dict[str, dict[str, Any]]:
        return {m["sample_id"]: m for m in self.metadata}

    def images(self, ids: list[str] | str) -> list[Image.Image]:
        """The kept samples' images (RGB), in the order of `ids`."""
        if isinstance(ids, str):
            ids = [ids]
        out = []
        for i in ids:
            with Image.open(self.image_path(i)) as im:
                out.append(im.convert("RGB"))
        return out


class LayerRows:
    """One layer of a complete `RepresentationStore` as a row source, read through its memory map.

    A store that is still being written (manifest not `complete`) is refused, and so is one that changes while it
    is read: every read checks that the manifest and the layer file are the ones opened.
    """

    def __init__(self, store: RepresentationStore, layer: int | str | None = None):
        if not store.complete:
            raise RuntimeError(
                f"the store at {store.path} is still being written (its manifest is not complete); wait for the "
                "extraction to finish (or rerun it to completion), then fit"
            )
        if layer is None:
            if len(store.layers) != 1:
                raise InputError(f"the store holds layers {store.layers}: say which one to fit with layer=")
            layer = store.layers[0]
        self.store, self.hook = store, store.hook_name(layer)
        self._files = [store.path / MANIFEST, store.path / LAYERS_DIR / f"{self.hook}.safetensors"]
        self._stamp = self._stat()
        self._Z = store.layer(self.hook)
        self.n_rows, self.d, self.dtype = int(self._Z.shape[0]), int(self._Z.shape[1]), self._Z.dtype

    def _stat(self) -> list[tuple[int, int, int]]:
        out = []
        for f in self._files:
            st = os.stat(f)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return out

    def read(self, start: int, stop: int) -> Float[Tensor, "rows d_model"]:
        try:
            same = self._stat() == self._stamp
        except FileNotFoundError:
            same = False
        if not same:
            raise RuntimeError(
                f"the store at {self.store.path} changed while it was being read (an extraction is rewriting it); "
                "let it finish, then fit again (a checkpointed fit resumes)"
            )
        return self._Z[start:stop]
