"""`lmm-concepts ground`: ground a saved dictionary on a store and save the explanations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmm_concepts._io import check_output_folder
from lmm_concepts.errors import InputError, MissingInputError
from lmm_concepts.models.load import ModelSpec


@dataclass
class GroundConfig:
    """Ground every concept of a dictionary in words (logit lens) and images (most activating samples)."""

    store: str = ""
    """The RepresentationStore folder the dictionary was fitted on."""
    dictionary: str = ""
    """The dictionary folder (written by ConceptDictionary.save or sae-lens's save_model)."""
    out: str = ""
    """Output folder for the explanations (explanations.json + explanations.safetensors)."""
    layer: str | None = None
    """Store layer the dictionary was fitted on (default: the hook its cfg.json records, else the only one, or
    'final'); another layer than the recorded one is refused unless --allow_layer_mismatch."""
    allow_layer_mismatch: bool = False
    """Ground the dictionary at --layer even though it records another hook (said in the notes)."""
    n_words: int = 15
    """Words per concept (never padded: fewer when the filter leaves fewer)."""
    n_images: int = 5
    """Most activating samples per concept."""
    n_candidates: int = 50
    """Top lens tokens the words are chosen from."""
    lens: str | None = None
    """'raw' (W_U·u, exact after the final norm) or 'ln_final' (u through the final norm); default follows the layer."""
    use_bias: bool = False
    """Add the unembedding bias b_U to the lens logits."""
    words_file: str | None = None
    """A text file of the words that count as real words, one per line (default: the English word lists)."""
    model: ModelSpec = field(default_factory=ModelSpec)


def _need(value: str, flag: str, command: str) -> str:
    if not value:
        raise InputError(f"--{flag} is required")
    return value


def run(cfg: GroundConfig) -> None:
    from lmm_concepts.dictionary import load_dictionary
    from lmm_concepts.extraction import RepresentationStore
    from lmm_concepts.grounding.ground import fitted_hook, ground

    store = RepresentationStore.open(_need(cfg.store, "store", "ground"))
    dictionary = load_dictionary(_need(cfg.dictionary, "dictionary", "ground"))
    out = check_output_folder(_need(cfg.out, "out", "ground"))
    if cfg.words_file and not Path(cfg.words_file).is_file():
        raise MissingInputError(f"--words_file {cfg.words_file}: no such file (one word per line)")
    model = cfg.model.load()
    word_filter = None
    if cfg.words_file:
        from lmm_concepts.grounding.words import WordFilter

        words = Path(cfg.words_file).read_text(encoding="utf-8").split()
        word_filter = WordFilter(vocabulary=frozenset(w.lower() for w in words), min_length=1)
    expl = ground(
        model, dictionary.to(model.device), store, n_words=cfg.n_words, n_images=cfg.n_images, lens=cfg.lens,
        layer=cfg.layer, use_bias=cfg.use_bias, n_candidates=cfg.n_candidates, word_filter=word_filter,
        allow_layer_mismatch=cfg.allow_layer_mismatch,
    )  # fmt: skip
    expl.dictionary_path = str(Path(cfg.dictionary).resolve())  # so `report` and `export` can encode with it
    expl.save(out)
    for c in expl.concepts:
        print(f"concept {c.index:3d}: {', '.join(c.words) or '(no word passes the filter)'}")
    for note in expl.notes:
        print(f"note: {note}")
    fitted = fitted_hook(dictionary)
    on = f" (the dictionary was fitted on {fitted})" if fitted not in (None, expl.hook_name) else ""
    print(f"{out}: {len(expl)} concepts, lens {expl.lens} at {expl.hook_name}{on}")
