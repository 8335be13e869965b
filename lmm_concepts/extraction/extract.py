"""`extract`: caption a dataset, keep the samples whose captions hold the word, store the word's representations.

For each batch (fixed order, see `lmm_concepts.data.iter_batches`):
  1. images that cannot be decoded are rejected ("unreadable");
  2. samples whose ground-truth captions lack the word as a whole word are rejected ("not_in_captions") before
     any model call — on COCO most images are, so most of the captioning cost is never paid;
  3. the rest are captioned with one batched `generate`; those whose generated tokens lack the word are rejected
     ("not_generated");
  4. one forward pass over the kept sequences, cut after the last position needed, caches only the requested hook
     points, and the vector at each sample's position is taken from each.
The batch is then committed to the store whole (see `writer.py`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lmm_concepts._io import check_output_folder, read_json
from lmm_concepts.data.base import (
    CaptionDataset,
    IterableCaptions,
    Sample,
    as_dataset,
    iter_batches,
    n_samples,
    sample_fingerprint,
)
from lmm_concepts.errors import InputError
from lmm_concepts.extraction.lock import StoreLock
from lmm_concepts.extraction.positions import check_position_rule, left_padding, sequence_position
from lmm_concepts.extraction.selection import check_producible, find_word, mentions, word_forms, word_pattern
from lmm_concepts.extraction.shards import store_dtype
from lmm_concepts.extraction.store import (
    BATCH_RECORD,
    IMAGES_DIR,
    REASONS,
    RepresentationStore,
    committed_batches,
)
from lmm_concepts.extraction.writer import StoreWriter, image_file_name
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


@dataclasses.dataclass
class _Batch:
    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    activations: dict[str, torch.Tensor]
    images: dict[str, Any]


def _reject(s: Sample, reason: str, detail: str | None) -> dict[str, Any]:
    return {"sample_id": s.id, "reason": reason, "detail": detail, "image_path": s.image_path}


def _kept_row(s: Sample, **fields: Any) -> dict[str, Any]:
    row = {"sample_id": s.id, "image_path": s.image_path, "captions": s.captions, **fields}
    for k, v in s.extras.items():  # dataset extras (e.g. the synthetic world's attributes) sit beside the fields
        row[k if k not in row else f"data_{k}"] = v
    return row


@torch.no_grad()
def process_batch(
    model,
    batch: list[Sample],
    *,
    pattern,
    hooks: list[str],
    position: str,
    prompt: str | None,
    max_new_tokens: int,
    image_dir: str,
) -> _Batch:
    """Apply the selection rule to one batch and take the kept samples' vectors at every hook."""
    rejected: list[dict[str, Any]] = []
    candidates: list[Sample] = []
    for s in batch:
        if s.image is None:
            rejected.append(_reject(s, "unreadable", s.error))
        elif not mentions(s.captions, pattern):
            rejected.append(_reject(s, "not_in_captions", None))
        else:
            candidates.append(s)
    if not candidates:
        return _Batch([], rejected, {}, {})

    tok = model.tokenizer
    gen = model.generate([s.image for s in candidates], prompt=prompt, max_new_tokens=max_new_tokens)
    # Generation pads after EOS; cut there. (Not at the pad id: a small vocabulary's pad may be generated.)
    stops = [tok.eos_token_id] if tok.eos_token_id is not None else []
    n_pad = left_padding(gen.attention_mask, gen.prompt_length).tolist()
    rows, positions, kept, images = [], [], [], {}
    for r, s in enumerate(candidates):
        match = find_word(tok, gen.generated_ids[r].tolist(), pattern, stops)
        if match is None:
            rejected.append(_reject(s, "not_generated", gen.texts[r]))
            continue
        pos = sequence_position(match.index, gen.prompt_length, n_pad[r], position)
        rows.append(r)
        positions.append(pos + n_pad[r])  # index into the padded batch
        row = _kept_row(
            s,
            generated=gen.texts[r],
            position=pos,
            generated_index=match.index,
            token_id=match.token_ids[0],
            token_ids=list(match.token_ids),
            token_str=tok.convert_ids_to_tokens(match.token_ids[0]),
            matched=match.text,
        )
        if s.image_path is None:  # an in-memory image: keep a copy so store.images() can show it
            rel = f"{image_dir}/{image_file_name(s.id)}"
            images[rel] = s.image
            row.update(image_path=rel, image_in_store=True)
        kept.append(row)
    order = {s.id: n for n, s in enumerate(batch)}
    rejected.sort(key=lambda x: order[x["sample_id"]])  # rejections in dataset order
    if not rows:
        return _Batch([], rejected, {}, images)

    end = max(positions) + 1  # later positions cannot change earlier ones (causal model): cut them off
    cache = model.capture(gen.inputs().select(rows).truncate(end), hooks)  # stops after the last block needed
    sel = torch.arange(len(rows))
    pos_t = torch.tensor(positions)
    acts = {h: cache[h][sel.to(cache[h].device), pos_t.to(cache[h].device)].to("cpu") for h in hooks}
    del cache
    return _Batch(kept, rejected, acts, images)


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
        "library_version": _version(),
    }
    # under torchrun (a process group of several ranks) batch i goes to rank i % world; see distributed.py
    from lmm_concepts.extraction import distributed

    _, world = distributed.rank_and_world()
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
        writer = distributed.open_writer(open_store, out)
        if not writer.complete:
            run = _run if world == 1 else distributed.run_ranks
            run(model, data, writer, forms, hooks, position, prompt, max_new_tokens, batch_size, num_workers, progress)
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


def nothing_kept(forms: Sequence[str], funnel: dict[str, int], examples: list[str]) -> InputError:
    """The error of a finished extraction that kept no sample, with a few of the captions the model generated."""
    generated = f" The model generated, e.g.: {'; '.join(repr(e.strip()) for e in examples[:3])}." if examples else ""
    return InputError(
        f"no sample kept for {forms[0]!r}: of {funnel['images']} images, {funnel['unreadable']} were unreadable, "
        f"{funnel['not_in_captions']} lacked the word in their ground-truth captions and {funnel['not_generated']} "
        f"in their generated captions.{generated} Choose a word the model generates, raise max_new_tokens, or pass "
        "plural=True. (The empty store was removed from the output folder.)"
    )


def generated_examples(out: Path, n: int = 3) -> list[str]:
    """Up to `n` generated captions of samples rejected as "not_generated", from the committed batch records."""
    examples: list[str] = []
    for b in committed_batches(out):
        for r in read_json(b / BATCH_RECORD)["rejected"]:
            if r["reason"] == "not_generated" and r.get("detail") and len(examples) < n:
                examples.append(r["detail"])
        if len(examples) >= n:
            break
    return examples


def _run(model, data, writer, forms, hooks, position, prompt, max_new_tokens, batch_size, num_workers, progress):
    pattern = word_pattern(forms)
    funnel: Counter[str] = Counter()
    done = committed_batches(writer.out)
    for b in done:  # counts of the batches a previous run wrote (one record in memory at a time)
        rec = read_json(b / BATCH_RECORD)
        funnel.update(r["reason"] for r in rec["rejected"])
        funnel["kept"] += len(rec["kept"])
        funnel["images"] += rec["n_images"]
    total = n_samples(data)
    bar = tqdm(total=total, initial=funnel["images"], unit="img", desc=f"extract {forms[0]!r}", disable=not progress)
    bar.set_postfix(kept=funnel["kept"])
    was_training = model.training
    model.eval()
    try:
        batches = iter_batches(data, batch_size, start_batch=len(done), num_workers=num_workers)
        for index, batch in enumerate(batches, start=len(done)):
            result = process_batch(
                model, batch, pattern=pattern, hooks=hooks, position=position, prompt=prompt,
                max_new_tokens=max_new_tokens, image_dir=IMAGES_DIR,
            )  # fmt: skip
            writer.write_batch(index, result.activations, result.kept, result.rejected, result.images, len(batch))
            funnel.update(r["reason"] for r in result.rejected)
            funnel["kept"] += len(result.kept)
            funnel["images"] += len(batch)
            bar.update(len(batch))
            bar.set_postfix(kept=funnel["kept"])
    finally:
        bar.close()
        model.train(was_training)
    summary = {"images": funnel["images"], **{r: funnel[r] for r in REASONS}, "kept": funnel["kept"]}
    if funnel["kept"] == 0:  # a store of nothing: removed, so that the corrected rerun finds the folder as it was
        examples = generated_examples(writer.out)
        writer.clear(writer.manifest)
        raise nothing_kept(forms, summary, examples)
    writer.finalize({"funnel": summary})


def _version() -> str:
    from lmm_concepts import __version__

    return __version__

