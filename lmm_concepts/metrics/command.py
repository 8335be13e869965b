"""`lmm-concepts evaluate` and `lmm-concepts sweep`."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmm_concepts._io import check_output_folder
from lmm_concepts.dictionary.registry import NameChoices, get_learner
from lmm_concepts.errors import InputError
from lmm_concepts.models.load import ModelSpec


@dataclass
class ScorerSpec:
    """Local CLIP and BERT models for the metrics (nothing is downloaded)."""

    clip: str | None = None
    """open_clip folder (open_clip_config.json + weights), or an open_clip model name with --clip_checkpoint."""
    clip_checkpoint: str | None = None
    """Weights file for --clip given as a model name."""
    bert: str | None = None
    """Local Hugging Face encoder folder for BERTScore."""
    bert_layers: int = 8
    """Encoder layer whose embeddings BERTScore matches."""
    bert_baseline: str | None = None
    """Baseline file for BERTScore rescaling (default: no rescaling)."""
    device: str | None = None
    """Device of the scorers (default: cuda when available)."""

    def load(self):
        import torch

        from lmm_concepts.metrics.bertscore import load_bert
        from lmm_concepts.metrics.clipscore import load_clip

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        clip = load_clip(self.clip, checkpoint=self.clip_checkpoint, device=device) if self.clip else None
        bert = load_bert(self.bert, self.bert_layers, self.bert_baseline, device=device) if self.bert else None
        return clip, bert


@dataclass
class EvaluateConfig:
    """Score saved explanations on a test store: CLIPScore, BERTScore, overlap and their baselines."""

    explanations: str = ""
    """Folder written by `lmm-concepts ground` (or Explanations.save)."""
    dictionary: str = ""
    """The dictionary folder the explanations were grounded from (encodes the test samples)."""
    test_store: str = ""
    """RepresentationStore of the test split (same layer as the explanations)."""
    out: str = ""
    """Output folder (results.json, results.md, results.safetensors)."""
    metrics: list[str] = field(default_factory=lambda: ["clipscore", "bertscore", "overlap"])
    """Any of: clipscore, bertscore, overlap, mas_words, quality, faithfulness (faithfulness needs --with_model)."""
    r: int = 3
    """The top-r column (top-1 is always reported)."""
    with_model: bool = False
    """Load the model (--model.*) to rerun the test sequences for faithfulness."""
    allow_layer_mismatch: bool = False
    """Use a dictionary that records another hook than the test store's layer (said in the notes)."""
    scorers: ScorerSpec = field(default_factory=ScorerSpec)
    model: ModelSpec = field(default_factory=ModelSpec)


def run_evaluate(cfg: EvaluateConfig) -> None:
    from lmm_concepts.dictionary import load_dictionary
    from lmm_concepts.extraction import RepresentationStore
    from lmm_concepts.grounding.explanations import Explanations
    from lmm_concepts.metrics.evaluate import evaluate

    for flag in ("explanations", "dictionary", "test_store", "out"):
        if not getattr(cfg, flag):
            raise InputError(f"--{flag} is required")
    check_output_folder(cfg.out)
    check_scorers(cfg.metrics, cfg.scorers)
    expl = Explanations.load(cfg.explanations, dictionary=load_dictionary(cfg.dictionary))
    test = RepresentationStore.open(cfg.test_store)
    clip, bert = cfg.scorers.load()
    model, inputs = None, None
    if "faithfulness" in cfg.metrics:
        if not cfg.with_model:
            raise InputError("--metrics faithfulness reruns the model: add --with_model true (and --model)")
        from lmm_concepts.metrics.sequences import store_sequences

        model = cfg.model.load()
        expl.dictionary.to(model.device)
        inputs = store_sequences(model, test)
    res = evaluate(expl, test, clip=clip, bert=bert, metrics=cfg.metrics, r=cfg.r, model=model,
                   faithfulness_inputs=inputs, allow_layer_mismatch=cfg.allow_layer_mismatch)
    res.save(cfg.out)
    print(res.to_markdown())


def check_scorers(metrics: list[str], scorers: ScorerSpec) -> None:
    """The local models the chosen metrics need (their `needs` in `metrics.registry`), named as the options that
    give them (before anything loads)."""
    # the registry imports torch: read when a command runs, not for --help
    from lmm_concepts.metrics.registry import METRIC_REGISTRY

    def chosen_needing(scorer: str) -> tuple[str, str] | None:
        """("--metrics a / b need", "them") when a chosen metric needs `scorer`; else None."""
        names = [name for name, m in METRIC_REGISTRY.items() if scorer in m.needs]
        if not set(names) & set(metrics):
            return None
        one = len(names) == 1
        return f"--metrics {' / '.join(names)} need{'s' if one else ''}", names[0] if one else "them"

    if (said := chosen_needing("clip")) and not scorers.clip:
        raise InputError(
            f"{said[0]} a CLIP model: give --clip <local open_clip folder> (or an open_clip model name with "
            f"--clip_checkpoint <weights>), or leave {said[1]} out of --metrics"
        )
    if (said := chosen_needing("bert")) and not scorers.bert:
        raise InputError(
            f"{said[0]} a text encoder: give --bert <local Hugging Face encoder folder> (and --bert_layers), or "
            f"leave {said[1]} out of --metrics"
        )


@dataclass
class SweepConfig:
    """The layer ablation (--over layer) or the K sweep (--over k): fit, ground and evaluate per point (resumable)."""

    over: str = "k"
    """'k' (number of concepts) or 'layer'."""
    train_store: str = ""
    """RepresentationStore to fit on (holding every swept layer)."""
    test_store: str = ""
    """RepresentationStore to evaluate on."""
    out: str = ""
    """Output folder: one sub-folder per point, sweep.json and sweep.md; rerun to resume."""
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    """Numbers of concepts (--over k)."""
    n_concepts: int = 20
    """Number of concepts (--over layer)."""
    layers: list[str] = field(default_factory=lambda: ["final"])
    """Layers (--over layer): indices, 'final' or hook names; --over k uses the first."""
    learner: str = field(default="semi_nmf", metadata={"custom_args": {"choices": NameChoices()}})
    """Any registered learner (see `lmm-concepts fit --help`): semi_nmf, pca, kmeans, simple, nmf, sae, random, ..."""
    l1: float | None = None
    """Sparsity weight of the learners that take one (semi_nmf, nmf, random: the reference code's alpha); default:
    the learner's own (1.0 for semi_nmf and random, 0 for nmf). Refused for a learner without one."""
    seed: int | None = None
    """Seed of the fits (default: the learner's own, 0); refused for a deterministic learner (simple)."""
    n_seeds: int = 1
    """--over k: also fit each K with seeds seed+1 … seed+n_seeds−1 and report seed_stability."""
    metrics: list[str] = field(default_factory=lambda: ["overlap", "quality"])
    """Metrics per point (see `evaluate`)."""
    n_words: int = 15
    n_images: int = 5
    r: int = 3
    scorers: ScorerSpec = field(default_factory=ScorerSpec)
    model: ModelSpec = field(default_factory=ModelSpec)


_FLAGS = {"l1": "--l1", "seed": "--seed"}


def _given(l1: float | None, seed: int | None) -> dict:
    return {k: v for k, v in {"l1": l1, "seed": seed}.items() if v is not None}


def make_learner(name: str, n_concepts: int, l1: float | None = None, seed: int | None = None):
    """A fresh registered learner `name` with the options given (None: the learner's default); an option the learner
    does not take is refused with an InputError rather than ignored."""
    return get_learner(name, flag="learner").build(n_concepts, given=_given(l1, seed), flags=_FLAGS)


def run_sweep(cfg: SweepConfig) -> None:
    from lmm_concepts.extraction import RepresentationStore
    from lmm_concepts.metrics.sweeps import k_sweep, layer_sweep

    for flag in ("train_store", "test_store", "out"):
        if not getattr(cfg, flag):
            raise InputError(f"--{flag} is required")
    if cfg.over not in ("k", "layer"):
        raise InputError(f"--over must be 'k' or 'layer', got {cfg.over!r}")
    if cfg.n_seeds < 1 or (cfg.n_seeds > 1 and cfg.over != "k"):
        raise InputError(f"--n_seeds must be ≥ 1, and above 1 only with --over k; got {cfg.n_seeds} (--over {cfg.over})")
    entry = get_learner(cfg.learner, flag="learner")
    entry.check_options(_given(cfg.l1, cfg.seed), _FLAGS)  # before any work: an option the learner does not take
    if cfg.n_seeds > 1 and not entry.takes("seed"):
        raise InputError(f"--n_seeds {cfg.n_seeds} refits with other seeds, but the {cfg.learner} learner is "
                         "deterministic (it takes no seed): leave --n_seeds at 1")
    first_seed = cfg.seed or 0
    check_output_folder(cfg.out)
    check_scorers(cfg.metrics, cfg.scorers)
    train, test = RepresentationStore.open(cfg.train_store), RepresentationStore.open(cfg.test_store)
    model = cfg.model.load()
    clip, bert = cfg.scorers.load()
    common = dict(clip=clip, bert=bert, metrics=cfg.metrics, r=cfg.r, n_words=cfg.n_words, n_images=cfg.n_images,
                  out=cfg.out)
    if cfg.over == "k":
        def make(K: int, seed: int | None = None):  # k_sweep asks for seeds 1 … n_seeds−1 after the first fit
            return make_learner(cfg.learner, K, cfg.l1, cfg.seed if seed is None else first_seed + seed)

        res = k_sweep(model, train, test, cfg.ks, make, layer=cfg.layers[0], n_seeds=cfg.n_seeds, **common)
    else:
        res = layer_sweep(model, train, test, cfg.layers,
                          lambda: make_learner(cfg.learner, cfg.n_concepts, cfg.l1, cfg.seed), **common)
    print(res.to_markdown())
