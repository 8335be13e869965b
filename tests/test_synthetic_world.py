"""The synthetic world: deterministic, captions agree with attributes, varied grammar, JSONL round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmm_concepts.data.synthetic import (
    ATTRIBUTES,
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    SyntheticWorld,
    attribute_words,
    parse_caption,
    shape_nouns,
    tokenize,
    vocabulary,
    word_list_caption,
)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=3, n_train=120, n_test=30, image_size=48)


def test_vocabulary_sizes_meet_the_spec():
    assert len(SHAPES) >= 5 and len(COLORS) >= 6 and len(SIZES) == 3 and len(POSITIONS) >= 4
    assert len(BACKGROUNDS) >= 2
    nouns = shape_nouns()
    assert nouns["crosses"] == "cross" and nouns["circle"] == "circle" and len(nouns) == 2 * len(SHAPES)
    words = set(vocabulary())
    for values in attribute_words().values():
        assert set(values) <= words


def test_same_seed_same_world_other_seed_other_world(world):
    again = SyntheticWorld(seed=3, n_train=120, n_test=30, image_size=48)
    for i in (0, 7, 119):
        a, b = world.train[i], again.train[i]
        assert a.id == b.id and a.captions == b.captions and a.attributes == b.attributes
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    other = SyntheticWorld(seed=4, n_train=120, n_test=30, image_size=48)
    assert [s.attributes for s in other.train[:20]] != [s.attributes for s in world.train[:20]]
    # A sample does not depend on how large the world is, and train and test differ.
    bigger = SyntheticWorld(seed=3, n_train=500, n_test=30, image_size=48)
    assert bigger.train[5].captions == world.train[5].captions
    assert [s.attributes for s in world.test[:20]] != [s.attributes for s in world.train[:20]]


def test_samples_are_well_formed(world):
    items = list(world)
    assert len(items) == len(world) == 150
    assert items[0].id == "train-00000" and items[-1].id == "test-00029"
    for _id, image, captions, attributes in items[:40]:
        assert image.size == (48, 48) and image.mode == "RGB"
        assert set(attributes) == set(ATTRIBUTES)
        json.dumps(attributes)  # JSON-serialisable
        assert len(captions) == 3 and len(set(captions)) == 3


def test_every_caption_names_exactly_its_attributes(world):
    for s in world:
        for c in s.captions:
            assert parse_caption(c) == s.attributes, (c, s.attributes)
        noun = tokenize(word_list_caption(s.attributes))
        assert s.attributes["color"] in noun


def test_plurals_follow_the_count(world):
    for s in world.train:
        words = set(tokenize(" ".join(s.captions)))
        plural = {w for w in words if w in shape_nouns() and w not in SHAPES}
        if s.attributes["count"] == 1:
            assert not plural and s.attributes["shape"] in words
        else:
            assert plural and s.attributes["shape"] not in words
            assert ("two" if s.attributes["count"] == 2 else "three") in words


def test_attributes_appear_before_and_after_the_noun(world):
    before, after = {a: 0 for a in ("color", "size")}, {a: 0 for a in ("color", "size")}
    orders = set()
    for s in world.train:
        for c in s.captions:
            words = tokenize(c)
            noun = next(i for i, w in enumerate(words) if w in shape_nouns())
            for a in before:
                (before if words.index(s.attributes[a]) < noun else after)[a] += 1
            orders.add(tuple("N" if w in shape_nouns() else w for w in words
                             if w in shape_nouns() or w in (s.attributes["color"], s.attributes["size"])))
    assert all(before[a] > 20 and after[a] > 20 for a in before), (before, after)
    assert len(orders) >= 4  # several word orders, not one template


def test_attribute_values_are_all_drawn(world):
    big = SyntheticWorld(seed=0, n_train=400, n_test=0, image_size=32)
    for attr, values in attribute_words().items():
        seen = {s.attributes[attr] for s in big.train}
        expected = set(values) if attr != "count" else {1, 2, 3}
        assert seen == expected, attr


def test_the_drawing_shows_the_colour(world):
    # The object's colour is the most saturated colour in the image, near its nominal RGB.
    for s in world.train[:30]:
        px = np.asarray(s.image).reshape(-1, 3).astype(float)
        sat = px.max(1) - px.min(1)
        top = px[sat >= np.quantile(sat, 0.995)].mean(0)
        nearest = min(COLORS, key=lambda c: np.linalg.norm(np.array(COLORS[c]) - top))
        assert nearest == s.attributes["color"], (s.id, s.attributes, top)


def test_write_round_trips_through_jsonl(world, tmp_path):
    small = SyntheticWorld(seed=3, n_train=6, n_test=3, image_size=48)
    paths = small.write(tmp_path)
    assert set(paths) == {"train", "test"}
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    assert len(rows) == 6
    from PIL import Image

    for row, s in zip(rows, small.train, strict=True):
        assert set(row) == {"id", "image", "captions", "attributes"}
        assert row["id"] == s.id and row["captions"] == s.captions and row["attributes"] == s.attributes
        assert np.array_equal(np.asarray(Image.open(tmp_path / row["image"]).convert("RGB")), np.asarray(s.image))
    assert json.loads((tmp_path / "world.json").read_text())["seed"] == 3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_captions"):
        SyntheticWorld(n_captions=0)
    with pytest.raises(ValueError, match="count_probs"):
        SyntheticWorld(count_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="image_size"):
        SyntheticWorld(image_size=8)
    with pytest.raises(ValueError, match="split"):
        SyntheticWorld(n_train=1, n_test=1).split("val")
    with pytest.raises(IndexError):
        SyntheticWorld(n_train=2, n_test=1).train[2]


def test_written_world_reads_back_as_a_jsonl_dataset_with_attributes(tmp_path):
    from lmm_concepts.data import JsonlCaptions

    world = SyntheticWorld(seed=1, n_train=3, n_test=2, image_size=32)
    paths = world.write(tmp_path)
    ds = JsonlCaptions(paths["test"])
    assert len(ds) == 2
    sample_id, image_path, captions, extras = ds.raw(1)
    assert sample_id == world.test[1].id and captions == world.test[1].captions
    assert extras["attributes"] == world.test[1].attributes
    assert image_path.endswith(f"{world.test[1].id}.png")
