"""`extract`: caption a dataset, keep the samples whose captions hold the word, store the word's representations.

Everything is checked before anything is written (options, the word, the layers, the dataset's captions); then the
store is opened under its lock (`lock.py`, `writer.py`) and the extraction loop (`loop.py`) runs, in one process or
in each rank of a torchrun job (`distributed.py`). The manifest records what identifies the extraction: the model's
`identity()`, the options, and the dataset's ids and content (`dataset_identity`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lmm_concepts._io import check_output_folder
from lmm_concepts._version import __version__
from lmm_concepts.data.base import (
    CaptionDataset,
    IterableCaptions,
    as_dataset,
    n_samples,
    sample_fingerprint,
)
from lmm_concepts.errors import InputError
from lmm_concepts.extraction.distributed import Ranks, open_writer
from lmm_concepts.extraction.lock import StoreLock
from lmm_concepts.extraction.loop import Job, run_extraction
from lmm_concepts.extraction.positions import check_position_rule
from lmm_concepts.extraction.selection import check_producible, mentions, word_forms, word_pattern
from lmm_concepts.extraction.shards import store_dtype
from lmm_concepts.extraction.store import (
    RepresentationStore,
)
from lmm_concepts.extraction.writer import StoreWriter
from lmm_concepts.models.layers import resolve_layer


def resolve_layers(model, layers: Sequence[int | str] | int | str) -> list[str]:
    """Hook names for `layers` (indices, "final" or hook names), checked against the model, duplicates dropped."""
    if not isinstance(layers, (list, tuple)):
        layers = [layers]  # one layer; resolve_layer names anything that is not one
    if not layers:
        raise InputError("layers is empty: pass at least one, e.g. layers=['final'] or layers=[-1, 'final']")
    return list(dict.fromkeys(resolve_layer(layer, model) for layer in layers))


def dataset_identity(data) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
    """What identifies the dataset in a store's manifest, and the per-sample fingerprints behind it.

    Class, size, a digest of the ids and one of the content: every sample's captions, extra fields and image
    (`data.base.sample_fingerprint`: a file's size and mtime — its bytes are not read —, a hash of in-memory bytes
    or pixels), all read without decoding an image. The (id, fingerprint) list is kept in the store
    (`dataset_index.jsonl`) so that a changed dataset is refused with the changed ids named. Data that can be read
    only once (a generator) has neither.
    """
    ids: list[str] | None = None
    index: list[tuple[str, str]] | None = None
    content: str | None = None
    if isinstance(data, CaptionDataset):
        ids = data.sample_ids()
        try:
            index = list(data.fingerprints())
        except NotImplementedError:  # a subclass without raw(): its ids identify it
            index = None
    elif isinstance(data, IterableCaptions) and isinstance(data.items, (list, tuple)):
        ids = [str(item[0]) for item in data.items]  # in memory already: reading ids decodes nothing
        index = [(str(item[0]), sample_fingerprint(item[1], item[2], item[3] if len(item) > 3 else None))
                 for item in data.items]
    elif isinstance(data, IterableCaptions) and hasattr(data.items, "content_identity"):
        content = _digest(str(data.items.content_identity()))  # e.g. a world split: a pure function of its config
    if index is not None:
        content = _digest("\n".join(f"{i}\t{fp}" for i, fp in index))
    digest = _digest("\n".join(ids)) if ids is not None else None
    identity = {"class": type(data).__name__, "n_samples": n_samples(data), "ids_digest": digest,
                "content_digest": content}
    return identity, index


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def extract(
    model,
    dataset: CaptionDataset | Iterable[tuple],
    token: str,
    layers: Sequence[int | str] | int | str = ("final",),
    out: str | Path = "runs/extract",
    *,
    position: str = "predicts",
    batch_size: int = 16,
    max_new_tokens: int = 20,
    prompt: str | None = None,
    plural: bool = False,
    dtype: str = "float32",
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> RepresentationStore:
    """Representations of `token` in the captions `model` generates for `dataset`, stored in `out`.

    Args:
        model: any `LMM` (`lmm_concepts.models.interface`), e.g. `lc.load_lmm(folder)`.
        dataset: a `CaptionDataset` (COCO Karpathy, JSONL, CSV, HF on disk) or any iterable of (id, image, captions).
        token: the word of interest; matched as a whole word, case-insensitively.
        layers: layer indices (negative count from the end; `blocks.{L}.hook_resid_post`), "final" (the output of
            the final norm, `ln_final.hook_out`: the vectors the unembedding reads) or any hook names.
        out: the store's folder. Rerunning the same call continues an interrupted run; a folder holding a store
            of another extraction is refused unless `overwrite=True`.
        position: "predicts" (the position whose logits predict the word's first sub-token; the reference) or "at".
        batch_size: images per batch (captioning and the forward pass); part of the store's identity.
        max_new_tokens: length limit of the generated captions.
        prompt: the captioning prompt (None: the model's default).
        plural: also accept plural forms ("dogs", "boxes", "puppies").
        dtype: storage dtype: "float32", "float16" or "bfloat16".
        num_workers: DataLoader workers decoding images.
        overwrite: replace a store of another extraction in `out`: only that store's own files are deleted (see
            `writer.py`), never other files in `out`.
        progress: show a progress bar (images/s and the count kept).
    """
    # every check before anything is written: a refused start leaves `out` as it was
    check_position_rule(position)
    store_dtype(dtype)
    check_count("max_new_tokens", max_new_tokens, 1)
    check_count("batch_size", batch_size, 1)
    check_count("num_workers", num_workers, 0)
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"prompt must be a string or None (the model's default), got {type(prompt).__name__}")
    out = check_output_folder(out)
    forms = word_forms(token, plural)
    check_producible(model.tokenizer, forms)
    hooks = resolve_layers(model, layers)
    data = as_dataset(dataset)
    check_captions_hold(data, forms, plural)
    identity, index = dataset_identity(data)
    manifest = {
        "model": model.identity(),
        "word": forms[0],
        "forms": list(forms),
        "plural": plural,
        "layers": hooks,
        "prompt": prompt,
        "position": position,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "dtype": dtype,
        "dataset": identity,
        "library_version": __version__,
    }
    lock = StoreLock(out)  # one writer per store for the whole run; the ranks of one run share it (rank 0 holds it)

    def open_store(owner: bool) -> StoreWriter:
        if not owner:
            return StoreWriter(out, manifest, owner=False)
        lock.acquire()
        try:
            return StoreWriter(out, manifest, overwrite=overwrite, dataset_index=index)
        except BaseException:
            lock.release()
            raise

    created = not out.exists()
    try:
        writer = open_writer(open_store, out)
        if not writer.complete:  # under torchrun batch i goes to rank i % world; see loop.py
            job = Job(forms, tuple(hooks), position, prompt, max_new_tokens, batch_size)
            run_extraction(model, data, writer, job, ranks=Ranks.current(), num_workers=num_workers, progress=progress)
    finally:
        lock.release()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves no folder behind
    return RepresentationStore.open(out)


def check_count(name: str, value: Any, least: int) -> None:
    """`value` is an int (not a bool) of at least `least`, or an error naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name} must be a whole number ≥ {least}, got {value!r} (--{name})")


def _captions(data) -> Iterable[Any]:
    """Every sample's ground-truth captions, read without decoding an image; nothing for data read only once."""
    if isinstance(data, CaptionDataset):
        return (data.raw(i)[2] for i in range(len(data)))
    if isinstance(data, IterableCaptions) and isinstance(data.items, (list, tuple)):
        return (item[2] for item in data.items)
    return ()


def check_captions_hold(data, forms: Sequence[str], plural: bool) -> None:
    """Refuse a word that no ground-truth caption holds before any work (the scan stops at the first caption
    that does, so a word the data uses costs a few samples' reading)."""
    pattern = word_pattern(forms)
    seen = []
    try:
        for captions in _captions(data):
            if mentions(captions, pattern):
                return
            seen.append(captions)
    except NotImplementedError:  # a dataset without raw(): the extraction's funnel will tell
        return
    if not seen:
        return
    hint = ""
    if not plural and any(mentions(c, word_pattern(word_forms(forms[0], True))) for c in seen):
        hint = " (its plural does: pass plural=True / --plural true)"
    raise InputError(
        f"no ground-truth caption of the {len(seen)} samples holds {forms[0]!r} as a whole word{hint}: every sample "
        "would be rejected; choose a word the captions use (--token)"
    )



