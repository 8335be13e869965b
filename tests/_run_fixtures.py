"""A real run's outputs on the tiny HookedLMM, written the way a user's run writes them: `extract`, then the CLI's
`ground` (which records the dictionary folder) and `evaluate`. The dataset's captions carry hostile HTML."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import lmm_concepts as lc
from lmm_concepts.cli import main
from tests._extract_models import WORDS, noise_images, tiny_lmm
from tests._report_fixtures import EVIL

MODEL = ["--model", "tests._extract_models:tiny_lmm"]


@dataclass
class Run:
    folder: Path
    model: object
    store: lc.RepresentationStore
    dictionary: Path
    explanations: Path
    evaluation: Path
    word: str


def make_run(folder: Path, n_images: int = 16, n_concepts: int = 3, seed: int = 0) -> Run:
    model = tiny_lmm(seed=seed)
    images = noise_images(n_images)
    texts = model.generate(images, max_new_tokens=5).texts
    word = Counter(w for t in texts for w in set(t.split())).most_common(1)[0][0]
    data = [(f"img{i}", im, [f"a {word} {EVIL}"]) for i, im in enumerate(images)]
    store = lc.extract(model, data, word, ["final", 0], folder / "store", batch_size=8, max_new_tokens=5,
                       progress=False)
    lc.SemiNMF(n_concepts, l1=0.01, max_iter=50, seed=seed).fit(store.layer("final")).save(folder / "dico")
    (folder / "words.txt").write_text("\n".join(WORDS))
    if seed == 0:
        main(["ground", "--store", str(store.path), "--dictionary", str(folder / "dico"), "--out",
              str(folder / "explanations"), "--n_words", "4", "--n_images", "3", "--words_file",
              str(folder / "words.txt"), *MODEL])
        main(["evaluate", "--explanations", str(folder / "explanations"), "--dictionary", str(folder / "dico"),
              "--test_store", str(store.path), "--out", str(folder / "evaluation"), "--r", "2",
              "--metrics", "overlap", "quality"])
    return Run(folder, model, store, folder / "dico", folder / "explanations", folder / "evaluation", word)
