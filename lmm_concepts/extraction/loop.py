"""The extraction loop: one for a single process and for the ranks of a torchrun job.

For each batch (fixed order, see `lmm_concepts.data.numbered_batches`), `process_batch`:
  1. rejects images that cannot be decoded ("unreadable");
  2. rejects samples whose ground-truth captions lack the word as a whole word ("not_in_captions") before any
     model call — on COCO most images are, so most of the captioning cost is never paid;
  3. captions the rest with one batched `generate` and rejects those whose generated tokens lack the word
     ("not_generated");
  4. runs one forward pass over the kept sequences, cut after the last position needed, capturing only the requested
     hook points, and takes the vector at each sample's position from each.
`run_extraction` commits each batch to the store whole (see `writer.py`), so a killed run resumes where it stopped.

Ranks differ only in which batches they take (batch i goes to rank i % world, a single process being rank 0 of 1)
and in how the parts are merged: every rank waits for the others, then rank 0 alone merges the committed batches
into the store, or, when no sample was kept, removes it (every rank raising the same error).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lmm_concepts._io import read_json
from lmm_concepts.data.base import Sample, n_samples, numbered_batches
from lmm_concepts.errors import InputError
from lmm_concepts.extraction.distributed import Ranks
from lmm_concepts.extraction.positions import left_padding, sequence_position
from lmm_concepts.extraction.selection import find_word, mentions, word_pattern
from lmm_concepts.extraction.store import BATCH_RECORD, IMAGES_DIR, PARTS_DIR, REASONS, committed_batches
from lmm_concepts.extraction.writer import StoreWriter, image_file_name


@dataclasses.dataclass(frozen=True)
class Job:
    """What every batch of one extraction is processed with (the options its manifest records)."""

    forms: tuple[str, ...]
    """the word's surface forms; the first is the word"""
    hooks: tuple[str, ...]
    position: str
    prompt: str | None
    max_new_tokens: int
    batch_size: int

    @property
    def pattern(self) -> re.Pattern[str]:
        return word_pattern(self.forms)


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
    job: Job,
    image_dir: str = IMAGES_DIR,
) -> _Batch:
    """Apply the selection rule to one batch and take the kept samples' vectors at every hook."""
    pattern, position = job.pattern, job.position
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
    gen = model.generate([s.image for s in candidates], prompt=job.prompt, max_new_tokens=job.max_new_tokens)
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
    cache = model.capture(gen.inputs().select(rows).truncate(end), job.hooks)  # stops after the last block needed
    sel = torch.arange(len(rows))
    pos_t = torch.tensor(positions)
    acts = {h: cache[h][sel.to(cache[h].device), pos_t.to(cache[h].device)].to("cpu") for h in job.hooks}
    del cache
    return _Batch(kept, rejected, acts, images)


def run_extraction(model, data, writer: StoreWriter, job: Job, *, ranks: Ranks | None = None, num_workers: int = 0,
                   progress: bool = True) -> None:
    """This rank's batches not committed yet (one DataLoader for the run), then the ending: the merged store, or,
    when no sample was kept, the empty store removed and `nothing_kept` raised (on every rank)."""
    ranks = ranks or Ranks()
    done = writer.committed()
    mine = lambda k: ranks.takes(k) and k not in done  # noqa: E731
    bar, kept = _progress_bar(data, writer, job, ranks, progress)
    was_training = model.training
    model.eval()
    try:
        for index, batch in numbered_batches(data, job.batch_size, mine, num_workers=num_workers):
            result = process_batch(model, batch, job)
            writer.write_batch(index, result.activations, result.kept, result.rejected, result.images, len(batch))
            kept += len(result.kept)
            bar.update(len(batch))
            bar.set_postfix(kept=kept)
    finally:
        bar.close()
        model.train(was_training)
    ranks.barrier()  # every rank's batches are committed
    funnel = count_funnel(writer)
    if funnel["kept"] == 0:  # a store of nothing: removed, so that the corrected rerun finds the folder as it was
        error = nothing_kept(job.forms, funnel, generated_examples(writer))
        ranks.barrier()  # every rank has read the records
        if ranks.rank == 0:
            writer.clear(writer.manifest)
        raise error
    if ranks.rank == 0:
        writer.finalize({"funnel": funnel})
    ranks.barrier()  # the merged store is there for every rank to open


def _progress_bar(data, writer: StoreWriter, job: Job, ranks: Ranks, progress: bool) -> tuple[tqdm, int]:
    """A bar over the images of this rank's batches, those committed by an earlier run counted in, and the number
    of samples they kept."""
    n, size = n_samples(data), job.batch_size
    total = None if n is None else sum(min(size, n - k * size) for k in range(-(-n // size)) if ranks.takes(k))
    images = kept = 0
    for k in writer.committed():
        if ranks.takes(k):
            record = read_json(writer.out / PARTS_DIR / f"{k:06d}" / BATCH_RECORD)
            images, kept = images + record["n_images"], kept + len(record["kept"])
    rank = f" (rank {ranks.rank}/{ranks.world})" if ranks.world > 1 else ""
    bar = tqdm(total=total, initial=images, unit="img", desc=f"extract {job.forms[0]!r}{rank}",
               disable=not progress or ranks.rank != 0)
    bar.set_postfix(kept=kept)
    return bar, kept


def count_funnel(writer: StoreWriter) -> dict[str, int]:
    """Images / rejections by reason / kept, counted from the committed batch records, in batch order."""
    counts: Counter[str] = Counter()
    for b in committed_batches(writer.out):
        record = read_json(b / BATCH_RECORD)
        counts.update(r["reason"] for r in record["rejected"])
        counts["kept"] += len(record["kept"])
        counts["images"] += record["n_images"]
    return {"images": counts["images"], **{r: counts[r] for r in REASONS}, "kept": counts["kept"]}


def nothing_kept(forms: Sequence[str], funnel: dict[str, int], examples: list[str]) -> InputError:
    """The error of a finished extraction that kept no sample, with a few of the captions the model generated."""
    generated = f" The model generated, e.g.: {'; '.join(repr(e.strip()) for e in examples[:3])}." if examples else ""
    return InputError(
        f"no sample kept for {forms[0]!r}: of {funnel['images']} images, {funnel['unreadable']} were unreadable, "
        f"{funnel['not_in_captions']} lacked the word in their ground-truth captions and {funnel['not_generated']} "
        f"in their generated captions.{generated} Choose a word the model generates, raise max_new_tokens, or pass "
        "plural=True. (The empty store was removed from the output folder.)"
    )


def generated_examples(writer: StoreWriter, n: int = 3) -> list[str]:
    """Up to `n` generated captions of samples rejected as "not_generated", from the committed batch records."""
    examples: list[str] = []
    for b in committed_batches(writer.out):
        for r in read_json(b / BATCH_RECORD)["rejected"]:
            if r["reason"] == "not_generated" and r.get("detail") and len(examples) < n:
                examples.append(r["detail"])
        if len(examples) >= n:
            break
    return examples
