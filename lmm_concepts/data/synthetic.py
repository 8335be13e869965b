"""A synthetic captioned world whose ground truth we control.

Each image shows `count` (1-3) identical objects — one shape, one colour, one size — lined up along one side
of the picture, on one of a few backgrounds. Every sample carries its attributes
(``shape, color, size, position, background, count``) and several captions from a small grammar that puts
attribute words both before and after the shape noun ("a small red circle on the left ...",
"two circles that are small and red , at the top ...") and uses plurals for counts of 2-3.

Everything is a pure function of ``(seed, split, index)``: the same world is rebuilt bit for bit on any machine,
and ``SyntheticWorld.write`` saves it as PNGs plus one JSONL per split for the JSONL+folder dataset reader.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from lmm_concepts._io import write_text
from lmm_concepts.errors import InputError

# ---------------------------------------------------------------------------------------------------------------
# The world's vocabulary (attribute value -> caption word). Order is fixed: it defines class indices.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
                           "cross": "crosses"}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 160, 55), "blue": (40, 75, 225),
    "yellow": (235, 205, 30), "purple": (140, 55, 185), "orange": (245, 135, 25),
}
SIZES: dict[str, float] = {"small": 0.13, "medium": 0.20, "large": 0.26}  # object diameter / image side
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
POSITION_PHRASES: dict[str, str] = {"left": "on the left", "right": "on the right", "top": "at the top",
                                    "bottom": "at the bottom"}
BACKGROUNDS: tuple[str, ...] = ("light", "dark", "striped")
COUNTS: tuple[int, ...] = (1, 2, 3)
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three"}  # a count of one is written "a" / "an"
ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "position", "background", "count")

# Caption templates. {det}: a/an/two/three, {noun}: singular or plural, {be}: is/are, {pos}: "on the left", ...
TEMPLATES: tuple[str, ...] = (
    "{det} {size} {color} {noun} {pos} on a {background} background",
    "{det} {color} {noun} {pos} , {size} , on a {background} background",
    "{det} {noun} that {be} {size} and {color} , {pos} on a {background} background",
    "{pos} , {det} {size} {noun} in {color} on a {background} background",
    "{det} {size} {noun} colored {color} {pos} , on a {background} background",
    "{det} {noun} , {color} and {size} , {pos} on a {background} background",
)
# The word-list caption the toy CLIP also sees (the paper's CLIPScore text).
WORD_LIST_PREFIX = "a photo is described by the words"


def attribute_words() -> dict[str, list[str]]:
    """Every attribute's caption words, value order fixed (count: "a", "two", "three")."""
    return {
        "shape": list(SHAPES),
        "color": list(COLORS),
        "size": list(SIZES),
        "position": list(POSITIONS),
        "background": list(BACKGROUNDS),
        "count": ["a", *COUNT_WORDS.values()],
    }


def shape_nouns() -> dict[str, str]:
    """Every form of every shape noun -> its singular ("circles" -> "circle"): the valid target words."""
    return {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}


def vocabulary() -> list[str]:
    """All words the world's captions (and word-list captions) can contain, sorted."""
    words: set[str] = set(tokenize(WORD_LIST_PREFIX)) | {","}
    for template in TEMPLATES:
        words |= {w for w in template.split() if not w.startswith("{")}
    for phrase in POSITION_PHRASES.values():
        words |= set(phrase.split())
    words |= {"a", "an", "is", "are", *COUNT_WORDS.values(), *shape_nouns(), *COLORS, *SIZES, *POSITIONS,
              *BACKGROUNDS}
    return sorted(words)


_TOKEN = re.compile(r"[a-z]+|[^\sa-z]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words with punctuation split off: the world's (and the toy model's) word-level tokenization."""
    return _TOKEN.findall(text.lower())


# ---------------------------------------------------------------------------------------------------------------
class WorldSample(NamedTuple):
    """One sample of the world."""

    id: str
    """``"<split>-<index>"``, e.g. ``"train-00042"``."""
    image: Image.Image
    """RGB image, ``image_size`` square."""
    captions: list[str]
    """``n_captions`` captions from distinct templates."""
    attributes: dict[str, Any]
    """``{"shape", "color", "size", "position", "background", "count"}``; JSON-serialisable."""


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """How the world is drawn."""

    seed: int = 0
    """Seed of everything: same seed, same world."""
    n_train: int = 4000
    """Number of training samples."""
    n_test: int = 500
    """Number of test samples."""
    image_size: int = 64
    """Side of the square images, in pixels."""
    n_captions: int = 3
    """Captions per image, each from a different template."""
    count_probs: tuple[float, float, float] = (0.5, 0.25, 0.25)
    """Probabilities of 1, 2 and 3 objects."""


class SyntheticWorld:
    """Procedurally rendered images with known attributes and captions; deterministic by seed.

    ``world.train`` / ``world.test`` are sequences of `WorldSample`; iterating the world yields the training
    samples then the test samples. ``write(folder)`` saves PNGs and ``train.jsonl`` / ``test.jsonl``.
    """

    def __init__(self, seed: int = 0, n_train: int = 4000, n_test: int = 500, image_size: int = 64,
                 n_captions: int = 3, count_probs: Sequence[float] = (0.5, 0.25, 0.25)):
        if n_train < 0 or n_test < 0:
            raise InputError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
        if image_size < 16:
            raise InputError(f"image_size must be at least 16 pixels to draw the shapes, got {image_size}")
        if not 1 <= n_captions <= len(TEMPLATES):
            raise InputError(f"n_captions must be in 1..{len(TEMPLATES)} (one per template), got {n_captions}")
        probs = tuple(float(p) for p in count_probs)
        if len(probs) != 3 or min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise InputError(f"count_probs must be three non-negative probabilities summing to 1, got {probs}")
        self.cfg = WorldConfig(seed, n_train, n_test, image_size, n_captions, probs)  # type: ignore[arg-type]
        self.train = WorldSplit(self, "train", n_train)
        self.test = WorldSplit(self, "test", n_test)

    @classmethod
    def from_config(cls, cfg: WorldConfig) -> SyntheticWorld:
        return cls(**dataclasses.asdict(cfg))

    def split(self, name: str) -> WorldSplit:
        if name not in ("train", "test"):
            raise InputError(f"unknown split {name!r}; the world has 'train' and 'test'")
        return self.train if name == "train" else self.test

    def __iter__(self) -> Iterator[WorldSample]:
        yield from self.train
        yield from self.test

    def __len__(self) -> int:
        return len(self.train) + len(self.test)

    def __repr__(self) -> str:
        return f"SyntheticWorld({', '.join(f'{k}={v!r}' for k, v in dataclasses.asdict(self.cfg).items())})"

    # -- drawing --------------------------------------------------------------------------------------------
    def sample(self, split: str, index: int) -> WorldSample:
        """The `index`-th sample of `split`, a pure function of (seed, split, index)."""
        rng = np.random.default_rng([self.cfg.seed, ("train", "test").index(split), index])
        attributes = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "color": list(COLORS)[rng.integers(len(COLORS))],
            "size": list(SIZES)[rng.integers(len(SIZES))],
            "position": POSITIONS[rng.integers(len(POSITIONS))],
            "background": BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
            "count": int(rng.choice(COUNTS, p=self.cfg.count_probs)),
        }
        image = render(attributes, self.cfg.image_size, rng)
        templates = rng.choice(len(TEMPLATES), size=self.cfg.n_captions, replace=False)
        captions = [caption(attributes, int(t)) for t in templates]
        return WorldSample(f"{split}-{index:05d}", image, captions, attributes)

    def write(self, folder: str | Path, splits: Sequence[str] = ("train", "test")) -> dict[str, Path]:
        """Save ``images/<id>.png`` and ``<split>.jsonl`` (one ``{"id", "image", "captions", "attributes"}``
        per line, image path relative to `folder`) plus ``world.json`` (the config). Returns split -> JSONL."""
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        out = {}
        for name in splits:
            lines = []
            for s in self.split(name):
                rel = f"images/{s.id}.png"
                s.image.save(folder / rel)
                lines.append(json.dumps({"id": s.id, "image": rel, "captions": s.captions,
                                         "attributes": s.attributes}))
            out[name] = write_text(folder / f"{name}.jsonl", "\n".join(lines) + "\n")
        write_text(folder / "world.json", json.dumps(dataclasses.asdict(self.cfg), indent=2))
        return out


class WorldSplit(Sequence):
    """One split of a `SyntheticWorld`; samples are drawn on access (nothing is held in memory)."""

    def __init__(self, world: SyntheticWorld, name: str, n: int):
        self.world, self.name, self.n = world, name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(f"{self.name} split has {self.n} samples, asked for index {index}")
        return self.world.sample(self.name, index % self.n)

    def __iter__(self) -> Iterator[WorldSample]:
        for i in range(self.n):
            yield self.world.sample(self.name, i)

    def content_identity(self) -> str:
        """What fixes every sample of the split (a store's dataset identity): the world's config and the split."""
        return json.dumps({"world": dataclasses.asdict(self.world.cfg), "split": self.name}, sort_keys=True)


# ---------------------------------------------------------------------------------------------------------------
def caption(attributes: dict[str, Any], template: int) -> str:
    """The caption of `attributes` written with template number `template`."""
    count = attributes["count"]
    plural = count > 1
    words = {
        "noun": PLURALS[attributes["shape"]] if plural else attributes["shape"],
        "color": attributes["color"],
        "size": attributes["size"],
        "pos": POSITION_PHRASES[attributes["position"]],
        "background": attributes["background"],
        "be": "are" if plural else "is",
        "det": COUNT_WORDS[count] if plural else "a",
    }
    text = TEMPLATES[template].format(**words)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)  # "a orange" -> "an orange"


def word_list_caption(attributes: dict[str, Any]) -> str:
    """The paper's CLIPScore text for the attribute words: "a photo is described by the words red , circle , ..."."""
    noun = PLURALS[attributes["shape"]] if attributes["count"] > 1 else attributes["shape"]
    words = [attributes["color"], noun, attributes["size"], attributes["position"], attributes["background"]]
    if attributes["count"] > 1:
        words.insert(0, COUNT_WORDS[attributes["count"]])
    return f"{WORD_LIST_PREFIX} " + " , ".join(words)


def parse_caption(text: str) -> dict[str, Any]:
    """Read the attributes a caption names. An attribute is None when the caption names none or several of its
    values; count comes from "two"/"three" and the noun's number (a plural without a number word is None)."""
    words = tokenize(text)
    found: dict[str, Any] = {}
    nouns = shape_nouns()
    shapes = {nouns[w] for w in words if w in nouns}
    found["shape"] = shapes.pop() if len(shapes) == 1 else None
    for name, values in (("color", COLORS), ("size", SIZES), ("position", POSITIONS), ("background", BACKGROUNDS)):
        hits = {w for w in words if w in values}
        found[name] = hits.pop() if len(hits) == 1 else None
    numbers = {n for n, w in COUNT_WORDS.items() if w in words}
    plural = any(w in PLURALS.values() for w in words)
    singular = any(w in SHAPES for w in words)
    if len(numbers) == 1 and plural and not singular:
        found["count"] = numbers.pop()
    elif not numbers and singular and not plural:
        found["count"] = 1
    else:
        found["count"] = None
    return found


# ---------------------------------------------------------------------------------------------------------------
_SUPERSAMPLE = 4


def render(attributes: dict[str, Any], image_size: int, rng: np.random.Generator) -> Image.Image:
    """Draw `attributes` (random jitter of place, size and colour from `rng`), antialiased by supersampling."""
    side = image_size * _SUPERSAMPLE
    image = _background(attributes["background"], side, rng)
    draw = ImageDraw.Draw(image)
    count = attributes["count"]
    diameter = SIZES[attributes["size"]] * side * rng.uniform(0.9, 1.1)
    rgb = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLORS[attributes["color"]])
    # Objects line up along the chosen side: across the picture for top/bottom, down it for left/right.
    edge = rng.uniform(0.17, 0.22)
    along = np.linspace(0.5 - 0.15 * (count - 1), 0.5 + 0.15 * (count - 1), count)
    shift = rng.uniform(-0.04, 0.04)
    for a in along:
        a = a + shift + rng.uniform(-0.015, 0.015)
        across = edge + rng.uniform(-0.02, 0.02)
        x, y = {"left": (across, a), "right": (1 - across, a), "top": (a, across), "bottom": (a, 1 - across)}[
            attributes["position"]]
        _shape(draw, attributes["shape"], x * side, y * side, diameter / 2, rgb)
    return image.resize((image_size, image_size), Image.Resampling.LANCZOS)


def _background(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    if kind == "light":
        return Image.new("RGB", (side, side), (int(rng.integers(205, 240)),) * 3)
    if kind == "dark":
        return Image.new("RGB", (side, side), (int(rng.integers(25, 60)),) * 3)
    image = Image.new("RGB", (side, side), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    period = side / rng.uniform(5, 8)
    offset = rng.uniform(0, period)
    for k in range(-2, int(2 * side / period) + 3):  # diagonal stripes
        x0 = k * period + offset - side
        draw.polygon([(x0, 0), (x0 + period / 2, 0), (x0 + period / 2 + side, side), (x0 + side, side)],
                     fill=(110, 110, 110))
    return image


def _shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rgb: tuple) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=rgb)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r * 0.95, cy + r * 0.75), (cx - r * 0.95, cy + r * 0.75)], fill=rgb)
    elif shape == "star":
        points = [(cx + (r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
                   cy - (r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(points, fill=rgb)
    elif shape == "cross":
        w = r * 0.36
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=rgb)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}; the world draws {', '.join(SHAPES)}")
