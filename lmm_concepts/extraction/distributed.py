"""Distributed extraction: `extract` under torchrun shards the dataset across ranks by whole batches.

The dataset's fixed batch order is kept: batch i goes to rank i % world_size. Each rank commits its batches
as `parts/<i>/` folders of the one store (a folder every rank can write, e.g. a shared filesystem), exactly
as a single process would; when every rank is done, rank 0 merges the parts in batch order into the final
per-layer files and marks the manifest complete. So the store equals a single-process run's, row for row
(the batches are the same, so even the numbers match bit for bit when the model is deterministic). A rerun
after a crash skips every batch already committed, whichever rank wrote it.

`extract` calls `run_ranks` instead of its single-process loop when a process group with more than one
rank is initialised; rank 0 takes the store's lock (held by it for the whole run, see `lock.py`, so a second
run into the same folder is refused) and creates (or clears) the store before the others open it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lmm_concepts._io import read_json
from lmm_concepts.data.base import iter_batches, n_samples
from lmm_concepts.extraction.selection import word_pattern
from lmm_concepts.extraction.store import BATCH_RECORD, IMAGES_DIR, PARTS_DIR, REASONS


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def open_writer(make: Callable[[bool], object], out) -> object:
    """`make(owner)` on rank 0 first (`owner=True`: it takes the store's lock and creates or clears the store),
    then on the other ranks (`owner=False`: they add batches to the store rank 0 holds).

    If rank 0 cannot open the store (another extraction's store in `out`, or another run holding its lock), every
    rank raises instead of the others waiting for it forever.
    """
    rank, world = rank_and_world()
    if world == 1:
        return make(True)
    on_gpu = dist.get_backend() == "nccl"
    status = torch.zeros(1, device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")
    writer = None
    if rank == 0:
        try:
            writer = make(True)
        except Exception:
            status += 1
            dist.broadcast(status, src=0)
            raise
    dist.broadcast(status, src=0)
    if rank == 0:
        return writer
    if status.item():
        raise RuntimeError(f"rank 0 could not open the store at {out} (its error says why); nothing was written")
    return make(False)


def run_ranks(model, data, writer, forms, hooks, position, prompt, max_new_tokens, batch_size, num_workers,
              progress) -> None:
    """This rank's share of an extraction (batches rank, rank + world, …), then the merge on rank 0."""
    from lmm_concepts.extraction.extract import generated_examples, nothing_kept, process_batch

    rank, world = rank_and_world()
    pattern = word_pattern(forms)
    n = n_samples(data)
    n_batches = -(-n // batch_size) if n is not None else None
    bar = tqdm(total=n_batches, unit="batch", desc=f"extract {forms[0]!r} (rank {rank}/{world})",
               disable=not progress or rank != 0)
    was_training = model.training
    model.eval()
    try:
        index = rank
        while n_batches is None or index < n_batches:
            folder = writer.out / PARTS_DIR / f"{index:06d}"
            if not (folder / BATCH_RECORD).exists():  # committed by an earlier run (of any rank): keep it
                batch = next(iter(iter_batches(data, batch_size, start_batch=index, num_workers=num_workers)), None)
                if not batch:
                    break
                result = process_batch(
                    model, batch, pattern=pattern, hooks=hooks, position=position, prompt=prompt,
                    max_new_tokens=max_new_tokens, image_dir=IMAGES_DIR,
                )  # fmt: skip
                writer.write_batch(index, result.activations, result.kept, result.rejected, result.images, len(batch))
            bar.update(world)
            index += world
    finally:
        bar.close()
        model.train(was_training)
    dist.barrier()  # every rank's batches are committed
    funnel = _funnel(writer.out)
    if funnel["kept"] == 0:  # every rank raises the same error, so none waits for the others
        error = nothing_kept(forms, funnel, generated_examples(writer.out))
        dist.barrier()  # every rank has read the records
        if rank == 0:
            writer.clear(writer.manifest)
        raise error
    if rank == 0:
        writer.finalize({"funnel": funnel})
    dist.barrier()  # the merged store is there for every rank to open


def _funnel(out) -> dict[str, int]:
    """Images / rejections / kept counted from the committed batch records, in batch order up to the first gap."""
    from lmm_concepts.extraction.store import committed_batches

    counts: Counter[str] = Counter()
    for b in committed_batches(out):
        rec = read_json(b / BATCH_RECORD)
        counts.update(r["reason"] for r in rec["rejected"])
        counts["kept"] += len(rec["kept"])
        counts["images"] += rec["n_images"]
    return {"images": counts["images"], **{r: counts[r] for r in REASONS}, "kept": counts["kept"]}
