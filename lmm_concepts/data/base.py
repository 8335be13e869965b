"""Image-caption datasets: one `Sample` per image, decoded lazily, read in a fixed order of batches.

Every dataset here is a map-style torch `Dataset` whose items are `Sample`s (or an iterable of them), so a
`DataLoader` with workers can decode images in parallel. An unreadable image never raises: its `Sample` carries
`image=None` and the reason in `error`, and extraction records it as a rejection and goes on.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lmm_concepts.errors import InputError

#: What a dataset may hold for an image before decoding: a file path, encoded bytes, a decoded PIL image,
#: or a HF `datasets` Image dict ({"bytes": ..., "path": ...}).
ImageRef = str | os.PathLike | bytes | Image.Image | dict


@dataclass
class Sample:
    """One image with its ground-truth captions.

    `extras` holds every other per-sample field of the source (e.g. the synthetic world's `attributes`); it is
    kept in the store's metadata table. `image_path` is None when the image did not come from a file.
    """

    id: str
    image: Image.Image | None
    captions: list[str]
    image_path: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def as_captions(value: Any, where: str) -> list[str]:
    """A caption field as a list of strings (one string or a list of them), or a clear error."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(c, str) for c in value):
        return list(value)
    raise InputError(f"{where}: captions must be a string or a list of strings, got {type(value).__name__}: {value!r:.80}")


def image_path_of(ref: ImageRef) -> str | None:
    """The absolute file path an image reference points to, if any (so a store's paths work from anywhere)."""
    if isinstance(ref, (str, os.PathLike)):
        return os.path.abspath(ref)
    if isinstance(ref, dict) and ref.get("path") and Path(ref["path"]).is_file():
        return os.path.abspath(ref["path"])
    return None


def decode_image(ref: ImageRef) -> Image.Image:
    """Decode an image reference into an RGB PIL image (fully loaded, file closed). Raises on corrupt data."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
        if ref is None:
            raise ValueError("image dict has neither 'bytes' nor 'path'")
    source = io.BytesIO(ref) if isinstance(ref, bytes) else ref
    with Image.open(source) as im:
        im.load()
        return im.convert("RGB")


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def ref_fingerprint(ref: ImageRef) -> str:
    """What identifies an image reference's content, cheaply: a file's size and modification time (its bytes are
    never read), a hash of in-memory bytes or pixels. Equal fingerprints: the same image, barring a file rewritten
    with the same size within the filesystem's time resolution."""
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path") or b""
    if isinstance(ref, (str, os.PathLike)):
        try:
            st = os.stat(ref)
        except OSError:
            return "missing"
        return f"file:{st.st_size}:{st.st_mtime_ns}"
    if isinstance(ref, (bytes, bytearray)):
        return "bytes:" + _digest(bytes(ref))
    if isinstance(ref, Image.Image):
        return "pixels:" + _digest(f"{ref.mode}{ref.size}".encode(), ref.tobytes())
    return f"unknown:{type(ref).__name__}"


def sample_fingerprint(ref: ImageRef, captions: Any, extras: Any = None) -> str:
    """A sample's content (image, captions and extra fields) as 16 hex digits; see `ref_fingerprint`."""
    text = json.dumps([captions, extras or {}], sort_keys=True, default=str, ensure_ascii=False)
    return _digest(ref_fingerprint(ref).encode(), text.encode())


def make_sample(
    sample_id: Any, ref: ImageRef, captions: list[str], extras: dict[str, Any] | None = None
) -> Sample:
    """Decode `ref` into a `Sample`; a missing or corrupt image gives `image=None` and the reason."""
    path = image_path_of(ref)
    try:
        image, error = decode_image(ref), None
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        image, error = None, f"unreadable image: {type(exc).__name__}: {exc}"
    return Sample(str(sample_id), image, captions, path, dict(extras or {}), error)


class CaptionDataset(Dataset):
    """Map-style base: subclasses give `__len__`, `sample_id(i)` and `raw(i)`; `__getitem__` decodes lazily."""

    def __len__(self) -> int:
        raise NotImplementedError

    def sample_id(self, i: int) -> str:
        """The id of item `i`, without decoding its image."""
        raise NotImplementedError

    def raw(self, i: int) -> tuple[str, ImageRef, list[str], dict[str, Any]]:
        """(id, image reference, captions, extras) of item `i`, without decoding."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        return make_sample(*self.raw(i))

    def sample_ids(self) -> list[str]:
        return [self.sample_id(i) for i in range(len(self))]

    def fingerprints(self) -> Iterator[tuple[str, str]]:
        """(id, `sample_fingerprint`) of every item, in order, without decoding any image."""
        for i in range(len(self)):
            sample_id, ref, captions, extras = self.raw(i)
            yield sample_id, sample_fingerprint(ref, captions, extras)

    def _check_unique_ids(self) -> None:
        ids = self.sample_ids()
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise InputError(
                f"{type(self).__name__}: sample id {dup!r} occurs more than once; ids must be unique "
                "(pass an id field/column that is unique, or leave it unset to number the samples)"
            )


class IterableCaptions(IterableDataset):
    """Any iterable of `(id, image, captions)` (or `(id, image, captions, extras)`) tuples.

    `extras` is a dict of per-sample fields kept in the store's metadata; in a named tuple the 4th field keeps its
    name (the synthetic world's `WorldSample(id, image, captions, attributes)` gives an `attributes` field).

    `image` is a path, bytes or a PIL image; images are decoded as the iteration reaches them. A list can be
    read again (so a killed extraction resumes); a generator is read once. Ids must be unique, as in every dataset
    here (a store finds rows and copied images by id): a list is checked at once, any other iterable as it is read.
    """

    def __init__(self, items: Iterable[tuple]):
        self.items = items
        if isinstance(items, (list, tuple)):  # in memory already: checking the items decodes nothing
            for n, item in enumerate(items):
                _check_item(item, n)
            _check_unique((str(item[0]) for item in items), "item")

    def __iter__(self) -> Iterator[Sample]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[Sample]:
        """Samples from item `start` on; the items before it are passed over without decoding their images."""
        if isinstance(self.items, Sequence):  # e.g. a world split: index from `start`, render nothing before it
            pairs: Iterable[tuple[int, Any]] = ((n, self.items[n]) for n in range(start, len(self.items)))
        else:
            pairs = enumerate(self.items)
        seen: dict[str, int] = {}
        for n, item in pairs:
            _check_item(item, n)
            sample_id, ref, captions, *rest = item
            if str(sample_id) in seen:
                raise _duplicate(str(sample_id), f"items {seen[str(sample_id)]} and {n}")
            seen[str(sample_id)] = n
            if n >= start:
                yield make_sample(sample_id, ref, as_captions(captions, f"item {n}"), _extras(item, rest, n))


def _check_item(item: Any, n: int) -> None:
    if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
        raise InputError(
            f"item {n} of the iterable must be (id, image, captions) or (id, image, captions, extras), "
            f"got {type(item).__name__}{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}"
        )


def _duplicate(sample_id: str, where: str) -> InputError:
    return InputError(
        f"sample id {sample_id!r} occurs more than once ({where}); ids must be unique — a store finds each row and "
        "copied image by its id: give every sample its own id"
    )


def _check_unique(ids: Iterable[str], what: str) -> None:
    seen: dict[str, int] = {}
    for n, i in enumerate(ids):
        if i in seen:
            raise _duplicate(i, f"{what}s {seen[i]} and {n}")
        seen[i] = n


def _extras(item: tuple, rest: list, n: int) -> dict[str, Any]:
    """The 4th element of an item: a named tuple's field keeps its name (e.g. the world's `attributes`)."""
    if not rest:
        return {}
    if hasattr(item, "_fields"):
        return {item._fields[3]: rest[0]}
    if not isinstance(rest[0], dict):
        raise InputError(f"item {n}: the 4th element (extras) must be a dict, got {type(rest[0]).__name__}")
    return rest[0]


def n_samples(data: CaptionDataset | IterableDataset) -> int | None:
    """How many samples `data` holds, when that is known without reading it (None for a generator)."""
    if isinstance(data, CaptionDataset):
        return len(data)
    items = getattr(data, "items", None)
    return len(items) if isinstance(items, Sized) else None


def as_dataset(data: CaptionDataset | IterableDataset | Iterable[tuple]) -> CaptionDataset | IterableDataset:
    """`data` as a dataset of `Sample`s: datasets pass through, any other iterable of tuples is wrapped."""
    if isinstance(data, (CaptionDataset, IterableDataset)):
        return data
    if isinstance(data, (str, os.PathLike)):
        raise TypeError(
            f"got a path ({data!s}) where a dataset was expected: open it first, e.g. "
            "lmm_concepts.JsonlCaptions(path, image_root=...) or lmm_concepts.CocoKarpathy(json, image_root=...)"
        )
    if isinstance(data, Iterable):
        return IterableCaptions(data)
    raise TypeError(f"cannot read samples from a {type(data).__name__}: pass a CaptionDataset or an iterable of tuples")


def iter_batches(
    dataset: CaptionDataset | IterableDataset, batch_size: int, *, start_batch: int = 0, num_workers: int = 0
) -> Iterator[list[Sample]]:
    """Batches of `Sample`s in the dataset's fixed order, starting at batch `start_batch` (earlier ones unread).

    Batch k always holds items k·batch_size … (k+1)·batch_size − 1, whatever `num_workers` is, so a resumed run
    sees the same batches as an uninterrupted one.
    """
    for _, batch in numbered_batches(dataset, batch_size, lambda k: k >= start_batch, num_workers=num_workers):
        yield batch


def numbered_batches(
    dataset: CaptionDataset | IterableDataset, batch_size: int, take: Callable[[int], bool], *, num_workers: int = 0
) -> Iterator[tuple[int, list[Sample]]]:
    """(k, batch k) for every batch k the predicate `take` accepts, in order; batch k holds items
    k·batch_size … (k+1)·batch_size − 1 (see `iter_batches`).

    A map-style dataset is read by one `DataLoader` over the batches taken (the others are never read, so ranks that
    share a dataset each decode only their own images); an in-memory list of items is indexed; any other iterable is
    read in order, the batches not taken passed over.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(dataset, IterableCaptions) and isinstance(dataset.items, Sequence):
        for k in range(-(-len(dataset.items) // batch_size)):
            if take(k):  # the items before batch k are passed over without decoding their images
                yield k, list(itertools.islice(dataset.iter_from(k * batch_size), batch_size))
        return
    if isinstance(dataset, IterableDataset):
        it = iter(dataset)
        for k in itertools.count():
            batch = list(itertools.islice(it, batch_size))
            if not batch:
                return
            if take(k):
                yield k, batch
    n = len(dataset)
    taken = [k for k in range(-(-n // batch_size)) if take(k)]
    if not taken:
        return
    loader = DataLoader(
        dataset,
        batch_sampler=[range(k * batch_size, min((k + 1) * batch_size, n)) for k in taken],
        num_workers=num_workers,
        collate_fn=list,
        persistent_workers=False,
    )
    yield from zip(taken, loader, strict=True)
