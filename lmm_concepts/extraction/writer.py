"""Writing a `RepresentationStore`: whole batches committed atomically, then merged into one file per layer.

A batch is written as its layer shards and copied images first, then its `batch.json` record (atomic rename):
the record is the commit, so a batch folder without one is ignored and rewritten. A rerun continues at the first
batch without a record. When every batch is in, each layer's shards are streamed into `layers/<hook>.safetensors`
and the tables into JSONL, the manifest is marked complete, and the parts are removed. Nothing here holds more
than one batch in memory.

What the store owns, and so all that `overwrite` deletes: its fixed files (manifest, tables), the layer files of
the layers its manifest names, `parts/`, the images it copied (each batch lists them in `parts/<k>/images.json`
before writing them; a finished store lists them in `metadata.jsonl`), and the folders its manifest records it
created (`created_dirs`, removed only when empty). A store is never created over files of those names it did not
write; an `images/` folder already there (e.g. the dataset's own, when `out` is the dataset's folder) is shared.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from PIL import Image
from safetensors.torch import load_file
from torch import Tensor

from lmm_concepts._io import _atomic, read_json, write_json, write_safetensors
from lmm_concepts.errors import ConflictingOutputError
from lmm_concepts.extraction.shards import TENSOR_KEY, store_dtype, write_streamed
from lmm_concepts.extraction.store import (
    BATCH_RECORD,
    IMAGES_DIR,
    LAYERS_DIR,
    MANIFEST,
    METADATA,
    PARTS_DIR,
    REJECTIONS,
    STORE_FORMAT,
    committed_batches,
    read_jsonl,
)

#: Manifest fields that must agree for a rerun to continue an existing store.
IDENTITY_KEYS = (
    "format_version",
    "model",
    "word",
    "plural",
    "layers",
    "prompt",
    "position",
    "max_new_tokens",
    "batch_size",
    "dtype",
    "dataset",
)
FORMAT_VERSION = 2  # 2: created_dirs, images listed per batch, the dataset's content in its identity
#: the store's own fixed files and folders (folders: owned whole, except `images/`, which may be shared)
DATASET_INDEX = "dataset_index.jsonl"  # (id, fingerprint) of every sample the store was made from
OWN_FILES = (MANIFEST, METADATA, REJECTIONS, DATASET_INDEX)
OWN_DIRS = (LAYERS_DIR, PARTS_DIR)
BATCH_IMAGES = "images.json"
_IMAGE_NAME = re.compile(r"[\w.-]{0,80}-[0-9a-f]{8}\.png")


def _jsonable(value: Any) -> Any:
    """`value` made JSON-serialisable (tensors and arrays as lists, anything else unknown as its str)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def image_file_name(sample_id: str) -> str:
    safe = re.sub(r"[^\w.-]", "_", sample_id)[:80]
    return f"{safe}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}.png"


def _is_own_image(rel: Any) -> bool:
    """A path of the form `images/<name>` with a name `image_file_name` makes (nothing else is ever deleted)."""
    if not isinstance(rel, str):
        return False
    folder, _, name = rel.partition("/")
    return folder == IMAGES_DIR and _IMAGE_NAME.fullmatch(name) is not None


class StoreWriter:
    """Creates or continues the store at `out` for the extraction described by `manifest`.

    The `owner` (the process holding the store's lock, see `lock.py`) creates, clears and merges the store; under
    torchrun the other ranks open it with `owner=False` once rank 0 has, and only add their batches to `parts/`.
    """

    def __init__(
        self,
        out: str | Path,
        manifest: dict[str, Any],
        *,
        overwrite: bool = False,
        owner: bool = True,
        dataset_index: list[tuple[str, str]] | None = None,
    ):
        self.out = Path(out)
        manifest = {"format": STORE_FORMAT, "format_version": FORMAT_VERSION, "complete": False, **manifest}
        self.manifest = json.loads(json.dumps(_jsonable(manifest)))  # compared with the saved one: same types
        existing = self.out / MANIFEST
        if existing.exists():
            old = read_json(existing)
            if not isinstance(old, dict) or old.get("format") != STORE_FORMAT:
                raise ConflictingOutputError(
                    f"{existing} is not a representation store's manifest: the store would replace it; "
                    "choose another output folder"
                )
            differs = [k for k in IDENTITY_KEYS if old.get(k) != self.manifest.get(k)]
            if differs and not (overwrite and owner):
                changed = self._dataset_changes(dataset_index) if "dataset" in differs else ""
                raise ConflictingOutputError(
                    f"{self.out} holds a store for another extraction (differs in: {', '.join(differs)}){changed}; "
                    "pass overwrite=True to replace it, or choose another output folder"
                )
            if overwrite and owner:
                self.clear(old)
            else:
                self.manifest = old  # same extraction: continue (or reuse) it
                if self.complete and owner:  # a run killed after completing but before cleaning up
                    shutil.rmtree(self.out / PARTS_DIR, ignore_errors=True)
        elif not owner:
            raise RuntimeError(f"{existing} is missing: rank 0 creates the store before the other ranks open it")
        if owner and not existing.exists():
            self._check_free()
            self.manifest["created_dirs"] = [d for d in (*OWN_DIRS, IMAGES_DIR) if not (self.out / d).exists()]
            write_json(existing, self.manifest)
        if owner:  # what a run killed inside an atomic write left (a SIGKILL during the final merge)
            self.remove_orphans(self.manifest.get("layers", []))
        if owner and dataset_index is not None and not (self.out / DATASET_INDEX).exists():
            self._write_jsonl(DATASET_INDEX, ([i, fp] for i, fp in dataset_index))  # after the manifest: it is ours

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def _dataset_changes(self, index: list[tuple[str, str]] | None) -> str:
        """Which samples differ from those the store was made from (from its `dataset_index.jsonl`)."""
        if index is None or not (self.out / DATASET_INDEX).is_file():
            return ""
        old = {row[0]: row[1] for row in read_jsonl(self.out / DATASET_INDEX)}
        new = dict(index)
        parts = []
        for what, ids in (("changed", [i for i in new if i in old and new[i] != old[i]]),
                          ("added", [i for i in new if i not in old]), ("removed", [i for i in old if i not in new])):
            if ids:
                more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
                parts.append(f"{len(ids)} {what}: {', '.join(map(repr, ids[:5]))}{more}")
        if not parts and list(new) != list(old):
            parts.append("the same samples in another order")
        return f"; the dataset's samples differ from the store's — {'; '.join(parts)}" if parts else ""

    def _check_free(self) -> None:
        """Refuse to create a store over files of its names that it did not write (it would replace them)."""
        taken = [n for n in (*OWN_FILES, *OWN_DIRS) if (self.out / n).exists() or (self.out / n).is_symlink()]
        if taken:
            raise ConflictingOutputError(
                f"{self.out} already holds {', '.join(taken)} but no representation store: the store would replace "
                "them; choose an empty (or new) output folder"
            )

    def clear(self, old: dict[str, Any]) -> None:
        """Remove the files of the store described by the manifest `old` from `out`, and nothing else there."""
        images = set(self._own_images())  # read before the lists go
        shutil.rmtree(self.out / PARTS_DIR, ignore_errors=True)
        for name in old.get("layers", []):
            (self.out / LAYERS_DIR / f"{name}.safetensors").unlink(missing_ok=True)
        for rel in images:
            (self.out / rel).unlink(missing_ok=True)
        self.remove_orphans(old.get("layers", []))
        for name in OWN_FILES:
            (self.out / name).unlink(missing_ok=True)
        for name in (LAYERS_DIR, *old.get("created_dirs", [])):
            try:
                (self.out / name).rmdir()  # only when empty: anything else there is not the store's
            except OSError:
                pass

    def _own_images(self):
        """Relative paths of the images this store copied: listed by each batch before writing them, and by the
        finished store's metadata (never a path outside `images/`)."""
        for listing in sorted((self.out / PARTS_DIR).glob(f"*/{BATCH_IMAGES}")):
            try:
                yield from filter(_is_own_image, read_json(listing))
            except (OSError, ValueError):
                continue  # a listing cut short by a crash: its images were not written yet
        for row in read_jsonl(self.out / METADATA):
            if row.get("image_in_store") and _is_own_image(row.get("image_path")):
                yield row["image_path"]

    def remove_orphans(self, layers: list[str]) -> None:
        """Temporary files of atomic writes a killed run of this store left behind (the lock holder runs alone)."""
        names = [*OWN_FILES, *(f"{LAYERS_DIR}/{h}.safetensors" for h in layers)]
        for rel in names:
            target = self.out / rel
            for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
                tmp.unlink(missing_ok=True)
        for tmp in (self.out / IMAGES_DIR).glob(".*.png.*.tmp"):
            if _IMAGE_NAME.fullmatch(tmp.name[1:].rsplit(".", 2)[0]):
                tmp.unlink(missing_ok=True)

    def committed(self) -> set[int]:
        """Indices of the batches written whole (their record is there), gaps included (ranks commit out of order)."""
        parts = self.out / PARTS_DIR
        names = [p.name for p in parts.iterdir()] if parts.is_dir() else []
        return {int(n) for n in names if n.isdigit() and (parts / n / BATCH_RECORD).is_file()}

    def write_batch(
        self,
        index: int,
        activations: dict[str, Tensor],
        kept: list[dict[str, Any]],
        rejected: list[dict[str, Any]],
        images: dict[str, Image.Image],
        n_images: int,
    ) -> None:
        """Write batch `index` whole: shards and images first, then the record that commits it."""
        folder = self.out / PARTS_DIR / f"{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        dtype = store_dtype(self.manifest["dtype"])
        for name, acts in activations.items():
            if acts.shape[0] != len(kept):
                raise RuntimeError(f"{name}: {acts.shape[0]} rows for {len(kept)} kept samples")
            write_safetensors(folder / f"{name}.safetensors", {TENSOR_KEY: acts.to(dtype)})
        if images:  # listed first, so that overwriting the store finds them even if this batch never commits
            write_json(folder / BATCH_IMAGES, sorted(images), indent=None)
        for rel, image in images.items():
            _atomic(self.out / rel, lambda tmp, im=image: im.save(tmp, format="PNG"))
        record = {"index": index, "n_images": n_images, "kept": _jsonable(kept), "rejected": _jsonable(rejected)}
        write_json(folder / BATCH_RECORD, record, indent=None)

    def finalize(self, extra_manifest: dict[str, Any]) -> dict[str, Any]:
        """Merge the parts into the final files, mark the store complete, remove the parts."""
        batches = committed_batches(self.out)
        # One record in memory at a time: the tables of a large dataset never sit in memory whole.
        sizes = [len(read_json(b / BATCH_RECORD)["kept"]) for b in batches]
        n_kept = sum(sizes)
        d = self.manifest["model"]["d_model"]
        dtype = store_dtype(self.manifest["dtype"])
        for name in self.manifest["layers"]:
            shards = [b / f"{name}.safetensors" for b, m in zip(batches, sizes, strict=True) if m]
            chunks = (load_file(str(s))[TENSOR_KEY] for s in shards)
            write_streamed(self.out / LAYERS_DIR / f"{name}.safetensors", chunks, n_kept, d, dtype, {"hook_name": name})
        self._write_jsonl(METADATA, (row for b in batches for row in read_json(b / BATCH_RECORD)["kept"]))
        self._write_jsonl(REJECTIONS, (row for b in batches for row in read_json(b / BATCH_RECORD)["rejected"]))
        self.manifest.update(extra_manifest, complete=True, n_batches=len(batches), n_kept=n_kept)
        write_json(self.out / MANIFEST, self.manifest)
        shutil.rmtree(self.out / PARTS_DIR, ignore_errors=True)
        return self.manifest

    def _write_jsonl(self, name: str, rows) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")

        _atomic(self.out / name, write)

