"""Image-caption datasets: every source format, lazy decoding, fixed batch order, unreadable images."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
from PIL import Image

import lmm_concepts as lc
from lmm_concepts.data import iter_batches


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 5), (value, 0, 0)).save(path)


def test_coco_karpathy_split_and_nested_folders(tmp_path):
    images = []
    for n, split in enumerate(["train", "test", "test", "val"]):
        _img(tmp_path / "coco" / "val2014" / f"COCO_{n}.jpg", n)
        sents = [{"raw": f"A dog number {n}."}, {"raw": "Another caption."}]
        images.append({"filepath": "val2014", "filename": f"COCO_{n}.jpg", "cocoid": 100 + n, "split": split, "sentences": sents})
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    ds = lc.CocoKarpathy(tmp_path / "dataset_coco.json", tmp_path / "coco", split="test")
    assert len(ds) == 2 and ds.sample_ids() == ["101", "102"]
    s = ds[1]
    assert s.captions == ["A dog number 2.", "Another caption."] and s.image.size == (6, 5) and s.error is None
    assert s.image_path.endswith("val2014/COCO_2.jpg")
    assert len(lc.CocoKarpathy(tmp_path / "dataset_coco.json", tmp_path / "coco", split=None)) == 4
    with pytest.raises(ValueError, match="split must be one of"):
        lc.CocoKarpathy(tmp_path / "dataset_coco.json", tmp_path / "coco", split="dev")


def test_csv_groups_rows_of_one_image(tmp_path):
    _img(tmp_path / "a.png", 1)
    _img(tmp_path / "b.png", 2)
    (tmp_path / "c.csv").write_text("image,caption,source\na.png,a dog,x\na.png,a brown dog,x\nb.png,a cat,y\n")
    ds = lc.CsvCaptions(tmp_path / "c.csv")
    assert len(ds) == 2 and ds[0].captions == ["a dog", "a brown dog"] and ds[1].extras == {"source": "y"}
    with pytest.raises(ValueError, match="no column 'text'"):
        lc.CsvCaptions(tmp_path / "c.csv", caption_columns=["text"])


def test_jsonl_errors_name_the_line_and_field(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"id": 1, "image": "a.png", "captions": "x"}\n{"id": 2, "img": "b.png"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: no 'image' field"):
        lc.JsonlCaptions(tmp_path / "d.jsonl")
    (tmp_path / "e.jsonl").write_text('{"id": 1, "image": "a.png", "captions": "x"}\n{"id": 1, "image": "b.png", "captions": "y"}\n')
    with pytest.raises(ValueError, match="sample id '1' occurs more than once"):
        lc.JsonlCaptions(tmp_path / "e.jsonl")


def test_hf_dataset_from_local_disk_decodes_lazily(tmp_path):
    import datasets  # in the `dev` and `hf` extras
    for n in range(3):
        _img(tmp_path / f"{n}.png", n)
    ds = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / f"{n}.png") for n in range(3)], "captions": [["a dog"], ["a cat"], ["x"]], "k": [7, 8, 9]}
    ).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    data = lc.HFDiskCaptions(tmp_path / "hf")
    s = data[1]
    assert s.id == "1" and s.captions == ["a cat"] and s.extras == {"k": 8} and s.image.getpixel((0, 0)) == (1, 0, 0)
    prints = list(data.fingerprints())  # read in blocks: the same as row by row
    assert prints == list(lc.CaptionDataset.fingerprints(data)) and len({fp for _, fp in prints}) == 3
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "hfd"))
    with pytest.raises(ValueError, match=r"holds splits \['test'\]: pass split="):
        lc.HFDiskCaptions(tmp_path / "hfd")
    assert len(lc.HFDiskCaptions(tmp_path / "hfd", split="test")) == 3
    assert lc.HFDiskCaptions(ds)[2].captions == ["x"]  # a loaded Dataset works too


class Named(NamedTuple):  # shaped like the synthetic world's WorldSample
    id: str
    image: Image.Image
    captions: list
    attributes: dict


def test_batches_have_a_fixed_order_with_workers_and_resume_offsets(tmp_path):
    rows = []
    for n in range(7):
        _img(tmp_path / f"{n}.png", n)
        rows.append({"id": f"i{n}", "image": f"{n}.png", "captions": ["c"]})
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "5.png").write_bytes(b"\x89PNG broken")
    ds = lc.JsonlCaptions(tmp_path / "d.jsonl")
    plain = [[s.id for s in b] for b in iter_batches(ds, 3)]
    assert plain == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]
    assert [[s.id for s in b] for b in iter_batches(ds, 3, num_workers=2)] == plain
    assert [[s.id for s in b] for b in iter_batches(ds, 3, start_batch=1)] == plain[1:]
    bad = ds[5]
    assert bad.image is None and "unreadable image" in bad.error
    items = [(f"m{n}", Image.new("RGB", (2, 2)), "cap") for n in range(5)]
    assert [[s.id for s in b] for b in iter_batches(lc.IterableCaptions(items), 2, start_batch=1)] == [["m2", "m3"], ["m4"]]
    (s,) = next(iter_batches(lc.IterableCaptions([Named("n0", items[0][1], ["c"], {"shape": "circle"})]), 2))
    assert s.extras == {"attributes": {"shape": "circle"}}
    with pytest.raises(ValueError, match=r"item 0 of the iterable must be \(id, image, captions\)"):
        next(iter_batches(lc.IterableCaptions([("only-id",)]), 2))


def test_cli_data_spec_detects_each_format(tmp_path):
    from lmm_concepts.extraction.command import DataSpec, ModelSpec

    _img(tmp_path / "a.png", 1)
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "a", "image": "a.png", "captions": ["a dog"]}))
    (tmp_path / "d.csv").write_text("image,caption\na.png,a dog\n")
    entry = {"filepath": "", "filename": "a.png", "cocoid": 1, "split": "test", "sentences": [{"raw": "a dog"}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": [entry]}))
    assert isinstance(DataSpec(str(tmp_path / "d.jsonl")).load(), lc.JsonlCaptions)
    assert isinstance(DataSpec(str(tmp_path / "d.csv")).load(), lc.CsvCaptions)
    assert DataSpec(str(tmp_path / "dataset_coco.json")).load()[0].captions == ["a dog"]
    with pytest.raises(ValueError, match="pass --format"):
        DataSpec(str(tmp_path / "a.png")).load()
    with pytest.raises(FileNotFoundError, match="no such file"):
        DataSpec(str(tmp_path / "none.jsonl")).load()
    with pytest.raises(FileNotFoundError, match="not 'toy', not a folder with config.json"):
        ModelSpec(model=str(tmp_path)).load()
