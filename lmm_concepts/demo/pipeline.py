"""`lmm-concepts demo`: the whole method on the embedded toy model, as a pipeline of named stages.

    check inputs -> load toy model -> draw the world -> extract (train, test) -> l1 (train only) -> fit every method
    -> ground -> evaluate (overlap, CLIPScore) -> ground-truth recovery -> faithfulness -> layer sweep -> findings
    -> report

Each stage is a function of the `DemoState` built so far, so stages can be run, tested and replaced one by one.
Everything the stages compute lands in `<out>/results.json` (numbers) and `<out>/panels.json` (words, images),
rendered into `<out>/report.html`. Extraction stores live in `<out>/reps/` and resume if interrupted.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lmm_concepts.demo.config import DemoConfig  # noqa: F401  (DemoConfig: the CLI table names it here)
from lmm_concepts.demo.findings import paper_findings
from lmm_concepts.demo.l1_choice import choose_l1, parse_l1
from lmm_concepts.dictionary.l1_rule import resolve_l1
from lmm_concepts.dictionary.registry import get_learner, learner_names
from lmm_concepts.dictionary.semi_nmf import semi_nmf_probe
from lmm_concepts.errors import InputError
from lmm_concepts.metrics.evaluate import _finite
from lmm_concepts.metrics.probe import probe_recovery
from lmm_concepts.metrics.recovery import RecoveryResult, concept_recovery
from lmm_concepts.models.layers import layer_label

TOP_R = 3  # each test image's strongest concepts scored (CLIPScore top-3, the paper's) and shown in the report
FAITH_BATCH = 512  # sequences per faithfulness forward pass (each ablated row once per direction): the toy is small


class DemoInputError(InputError):
    """A demo option the demo cannot run with; the message says how to fix it."""


@dataclass
class DemoState:
    """What the stages have produced so far."""

    cfg: DemoConfig
    folder: Path
    word: str = ""
    model: Any = None
    clip: Any = None
    world_files: dict[str, Path] = field(default_factory=dict)
    stores: dict[str, Any] = field(default_factory=dict)  # split -> RepresentationStore
    dictionaries: dict[str, Any] = field(default_factory=dict)  # method -> ConceptDictionary
    explanations: dict[str, Any] = field(default_factory=dict)  # method -> Explanations
    codes: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # method -> split -> V
    recovery: dict[str, RecoveryResult] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ stages
def check_inputs(state: DemoState) -> None:
    """Refuse bad options before anything slow runs: unknown word or method, an existing output folder."""
    from lmm_concepts.data.synthetic import shape_nouns

    cfg = state.cfg
    nouns = shape_nouns()
    word = cfg.word.strip().lower()
    if word not in nouns:
        raise DemoInputError(
            f"--word {cfg.word!r} is not a shape noun of the synthetic world; choose one of: "
            f"{', '.join(sorted(set(nouns.values())))} (plurals are matched automatically)"
        )
    state.word = nouns[word]
    unknown = [m for m in cfg.methods if m not in learner_names()]
    if unknown or not cfg.methods:
        raise DemoInputError(f"unknown method(s) {unknown}; choose among {', '.join(learner_names())}")
    least = {"n_train": 1, "n_test": 1, "n_concepts": TOP_R, "batch_size": 1, "n_words": 1, "n_images": 0,
             "n_show": 0, "sae_training_samples": 1, "n_random": 2, "faith_samples": 0}
    for name, low in least.items():
        if getattr(cfg, name) < low:
            why = f" (each test image is scored by its top-{TOP_R} concepts)" if name == "n_concepts" else ""
            raise DemoInputError(f"--{name} must be at least {low}{why}, got {getattr(cfg, name)}")
    try:
        rule = parse_l1(str(cfg.l1))
        if rule is not None:
            rule.check_concepts(cfg.n_concepts)
    except InputError as err:
        raise DemoInputError(f"--l1: {err} (or 'cv', the demo's train-split choice)") from None
    if cfg.layer != "final" and not cfg.layer.lstrip("-").isdigit():
        raise DemoInputError(f"--layer must be 'final' or a block index, got {cfg.layer!r}")
    if state.folder.exists() and not state.folder.is_dir():
        raise DemoInputError(f"--out {state.folder} is a file; give a folder (new or a previous demo's)")
    if state.folder.exists() and any(state.folder.iterdir()):
        if not cfg.overwrite:
            raise DemoInputError(
                f"output folder {state.folder} already exists and is not empty; pass --overwrite to replace a "
                "previous demo's outputs there, or choose another --out"
            )
        remove_previous_outputs(state.folder, cfg.replace)
    state.folder.mkdir(parents=True, exist_ok=True)


#: what the demo writes into its folder (stages: world/, reps/, dictionaries/, explanations/, evaluation/; report: the rest)
DEMO_OUTPUTS = ("results.json", "panels.json", "report.html", "world", "reps", "dictionaries", "explanations", "evaluation")


def remove_previous_outputs(folder: Path, replace: list[str]) -> None:
    """Delete a previous demo's outputs from `folder`, plus the entries named in `replace`; refuse (deleting
    nothing) when the folder holds anything else, or when another run is writing one of its stores."""
    from lmm_concepts.extraction.lock import StoreLock

    bad = [r for r in replace if not r or Path(r).name != r or r in (".", "..")]
    if bad:
        raise DemoInputError(f"--replace takes names of entries directly inside --out, got {bad}")
    entries = {p.name for p in folder.iterdir()}
    if not entries & {"results.json", "reps"}:
        raise DemoInputError(
            f"refusing to overwrite {folder}: it does not look like a demo folder (no results.json or reps/); "
            "choose another --out"
        )
    foreign = sorted(entries - set(DEMO_OUTPUTS) - set(replace))
    if foreign:
        it = "it" if len(foreign) == 1 else "them"
        raise DemoInputError(
            f"refusing to overwrite {folder}: it holds {', '.join(foreign)}, which the demo did not write; move {it} "
            f"away, choose another --out, or add --replace {' '.join(foreign)} to delete {it} too"
        )
    locks = [StoreLock(p) for p in sorted((folder / "reps").glob("*")) if p.is_dir()]
    try:
        for lock in locks:  # a demo still extracting into this folder keeps it
            lock.acquire()
        for name in sorted(entries & {*DEMO_OUTPUTS, *replace}):
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    finally:
        for lock in locks:
            lock.release()


def load_models(state: DemoState) -> None:
    """The shipped toy DePALM and toy CLIP (a clear error tells how to retrain if the weights are missing)."""
    from lmm_concepts.zoo import load_toy, load_toy_clip

    path = state.cfg.toy or None
    state.model = load_toy(path, device=state.cfg.device)
    state.clip = load_toy_clip(path, device=state.cfg.device)


def draw_world(state: DemoState) -> None:
    """Render the world's train and test splits as PNGs + JSONL (deterministic by seed)."""
    from lmm_concepts.data.synthetic import SyntheticWorld

    cfg = state.cfg
    world = SyntheticWorld(seed=cfg.seed, n_train=cfg.n_train, n_test=cfg.n_test)
    state.world_files = world.write(state.folder / "world")


def extract_splits(state: DemoState) -> None:
    """Caption each split and keep the representations at the target word (plurals matched)."""
    from lmm_concepts import extract
    from lmm_concepts.data import JsonlCaptions

    layers = [*sweep_layers(state.model), state.cfg.layer] if state.cfg.sweep else [state.cfg.layer]  # deduplicated
    faith = faithfulness_layer(state.model)
    if state.cfg.faithfulness and faith is not None:
        layers.append(faith)
    for split, path in state.world_files.items():
        state.stores[split] = extract(
            state.model, JsonlCaptions(path), token=state.word, layers=layers, out=state.folder / "reps" / split,
            plural=True, batch_size=state.cfg.batch_size,
        )


def sweep_layers(model) -> list[str | int]:
    """Every block's residual output plus the final norm's output."""
    return [*range(model.n_layers), "final"]


def make_dictionary(method: str, cfg: DemoConfig):
    """A fresh, unfitted learner for `method`, built by the learner registry with the demo's settings it takes."""
    shared = {"l1": cfg.l1, "seed": cfg.seed, "training_samples": cfg.sae_training_samples, "device": cfg.device}
    return get_learner(method).build(cfg.n_concepts, shared=shared)


def set_l1(state: DemoState) -> None:
    """The absolute l1 Semi-NMF and the random dictionary use, from the train split only (`demo/l1_choice.py`):
    `state.cfg.l1` becomes that number; the rule and, for "cv", every candidate's score go to results.json."""
    from dataclasses import replace

    cfg = state.cfg
    train = state.stores["train"]
    Z = train.layer(cfg.layer).float()
    rule = parse_l1(str(cfg.l1))
    if rule is None:
        l1, record = choose_l1(Z, store_attributes(train), cfg.n_concepts, seed=cfg.seed, device=cfg.device)
    else:
        # "active:k" measures sparsity by fitting, as SemiNMF resolves it itself (same probe, same seed)
        probe = semi_nmf_probe(cfg.n_concepts, cfg.seed)
        l1, record = resolve_l1(rule, Z, cfg.n_concepts, probe=probe, seed=cfg.seed), {"rule": str(rule)}
    state.results["l1"] = l1
    state.results["l1_choice"] = record
    state.cfg = replace(cfg, l1=f"{l1:.6g}")


def fit_methods(state: DemoState) -> None:
    """Fit every method on the train representations at the compared layer; encode both splits."""
    train = state.stores["train"].layer(state.cfg.layer)
    test = state.stores["test"].layer(state.cfg.layer)
    for method in tqdm(state.cfg.methods, desc="fit", leave=False):
        dico = make_dictionary(method, state.cfg).fit(train)
        state.dictionaries[method] = dico
        state.codes[method] = {"train": dico.encode(train).cpu(), "test": dico.encode(test).cpu()}


def ground_methods(state: DemoState) -> None:
    """Words (logit lens) and most activating samples of every concept of every method."""
    from lmm_concepts import ground

    for method in tqdm(state.cfg.methods, desc="ground", leave=False):
        expl = ground(state.model, state.dictionaries[method], state.stores["train"], n_words=state.cfg.n_words,
                      n_images=state.cfg.n_images, layer=state.cfg.layer)
        # saved beside the explanations, so `lmm-concepts report` / `export` can encode samples with it
        expl.dictionary_path = str(state.dictionaries[method].save(state.folder / "dictionaries" / method).resolve())
        expl.save(state.folder / "explanations" / method)
        state.explanations[method] = expl


def evaluate_methods(state: DemoState) -> None:
    """The paper's metrics on the test split: overlap and CLIPScore of the top-1 / top-3 concepts."""
    from lmm_concepts.metrics import evaluate

    methods = state.results.setdefault("methods", {})
    for method in tqdm(state.cfg.methods, desc="evaluate", leave=False):
        scores = evaluate(state.explanations[method], state.stores["test"], clip=state.clip,
                          metrics=["overlap", "clipscore"], baselines=("random_words", "gt_captions"), r=TOP_R,
                          seed=state.cfg.seed)
        scores.save(state.folder / "evaluation" / method)  # the table, plus per-image scores
        methods.setdefault(method, {}).update(_metric_values(scores))


def _metric_values(scores) -> dict[str, Any]:
    """The headline numbers of an `EvaluationResults`, plus its baselines' CLIPScores for context."""
    concepts = scores.scores.get("concepts", {})
    out: dict[str, Any] = {"overlap": scores.overlap, "clipscore_top1": concepts.get("clipscore_top1"),
                           "clipscore_top3": concepts.get(f"clipscore_top{scores.r}")}
    out["baselines"] = {row: {k: v for k, v in cols.items() if k.startswith("clipscore")}
                        for row, cols in scores.scores.items() if row != "concepts"}
    return out


def value_word(attribute: str, value: str) -> str | None:
    """The caption word of an attribute value; counts of one have none ("a")."""
    if attribute == "count":
        return {"2": "two", "3": "three"}.get(value)
    return value


def store_attributes(store) -> list[dict[str, Any]]:
    """The store's attribute records, one per kept sample (the world's ground truth, from its metadata)."""
    return [row.get("attributes", {}) for row in store.metadata]


def recover(state: DemoState) -> None:
    """Ground-truth recovery: the concept chosen on train for each attribute value, its AUROC on test; and its
    ceiling, a linear probe per value trained on train and scored on test (`metrics.probe`)."""
    attrs = {split: store_attributes(store) for split, store in state.stores.items()}
    methods = state.results.setdefault("methods", {})
    for method in state.cfg.methods:
        words = state.explanations[method].words() if method in state.explanations else None
        rec = concept_recovery(
            state.codes[method]["train"], attrs["train"], state.codes[method]["test"], attrs["test"],
            signed=get_learner(method).signed,
            concept_words=words, value_word=value_word,
        )
        state.recovery[method] = rec
        methods.setdefault(method, {}).update(
            recovery_auroc=rec.mean_test_auroc, word_hit_rate=rec.word_hit_rate,
            recovery_by_attribute=rec.by_attribute(), recovery=rec.to_dict(),
        )
    probe = probe_recovery(state.stores["train"].layer(state.cfg.layer), attrs["train"],
                           state.stores["test"].layer(state.cfg.layer), attrs["test"])
    state.results["probe"] = {"hook_name": state.stores["train"].hook_name(state.cfg.layer),
                              **probe.to_dict(), "by_attribute": probe.by_attribute()}


def faithfulness_layer(model) -> int | None:
    """The residual layer faithfulness is measured at: the output of the block before the last (block 0 of the
    two-block toy). The last block reads it at the token (the indirect effect) and attention reads it at the caption's
    later tokens (the continuation); at the last block's output and after the final norm only the unembedding reads
    a vector, so every effect there is the logit lens's own arithmetic (`definitional`). None for a one-block model."""
    return model.n_layers - 2 if model.n_layers >= 2 else None


def measure_faithfulness(state: DemoState) -> None:
    """Does the model use each concept? `lc.faithfulness` on the test split's regenerated sequences, for every method
    fitted (on train, as the compared layer's) and grounded at `faithfulness_layer`: `methods.<name>.faithfulness`.
    The compared layer's own concepts are measured too (`faithfulness_compared`): at "final" only their next-token
    effect exists, and it is definitional (the lens that chose the words), reported as such."""
    from lmm_concepts import ground
    from lmm_concepts.metrics import faithfulness, store_sequences

    cfg = state.cfg
    layer = faithfulness_layer(state.model)
    if not cfg.faithfulness:
        return
    if layer is None:
        state.results.setdefault("notes", []).append(
            "faithfulness not measured: the model has a single block, so no block reads a residual vector after it")
        return
    train, test = state.stores["train"], state.stores["test"]
    ids = test.sample_ids[: cfg.faith_samples] if cfg.faith_samples > 0 else None
    seqs = store_sequences(state.model, test, ids, batch_size=cfg.batch_size)
    hook, compared = train.hook_name(layer), train.hook_name(cfg.layer)
    methods = state.results.setdefault("methods", {})
    run = dict(n_random=cfg.n_random, seed=cfg.seed, batch_size=FAITH_BATCH)
    for method in tqdm(cfg.methods, desc="faithfulness", leave=False):
        if hook == compared:
            expl = state.explanations[method]
        else:
            dico = make_dictionary(method, cfg).fit(train.layer(layer))
            expl = ground(state.model, dico, train, n_words=cfg.n_words, n_images=0, layer=layer)
        entry = methods.setdefault(method, {})
        entry["faithfulness"] = faithfulness_values(faithfulness(state.model, expl, seqs, **run))
        entry["faithful_share"] = entry["faithfulness"]["frac_above_random"]
        if hook != compared:
            entry["faithfulness_compared"] = faithfulness_values(
                faithfulness(state.model, state.explanations[method], seqs, **run))


def faithfulness_values(res) -> dict[str, Any]:
    """A `FaithfulnessResult` for results.json as `evaluate` writes it (NaN as null), less the per-concept scores."""
    return _finite({k: v for k, v in res.to_dict().items() if k != "per_concept"})


def layer_sweep(state: DemoState) -> None:
    """The paper's layer ablation: Semi-NMF fitted, grounded and scored at every extracted layer."""
    from lmm_concepts import ground
    from lmm_concepts.metrics import evaluate

    cfg = state.cfg
    if not cfg.sweep:
        return
    train, test = state.stores["train"], state.stores["test"]
    attrs = {split: store_attributes(store) for split, store in state.stores.items()}
    series: dict[str, list[float | None]] = {"recovery AUROC": [], "CLIPScore top-1": [], "overlap": []}
    layers = list(train.layers)
    main_hook = train.hook_name(cfg.layer)
    for layer in tqdm(layers, desc="layer sweep", leave=False):
        main = state.results.get("methods", {}).get("semi_nmf", {})
        if layer == main_hook and main.get("recovery_auroc") is not None:  # the compared layer: already done
            values = (main["recovery_auroc"], main.get("clipscore_top1"), main.get("overlap"))
        else:
            dico = make_dictionary("semi_nmf", cfg).fit(train.layer(layer))
            expl = ground(state.model, dico, train, n_words=cfg.n_words, n_images=cfg.n_images, layer=layer)
            scores = _metric_values(evaluate(expl, test, clip=state.clip, metrics=["overlap", "clipscore"],
                                             baselines=()))
            rec = concept_recovery(dico.encode(train.layer(layer)), attrs["train"], dico.encode(test.layer(layer)),
                                   attrs["test"], concept_words=expl.words(), value_word=value_word)
            values = (rec.mean_test_auroc, scores["clipscore_top1"], scores["overlap"])
        for name, value in zip(series, values, strict=True):
            series[name].append(value)
    state.results["sweep"] = {"method": "semi_nmf", "layers": [layer_label(x) for x in layers], "series": series,
                              "y_label": "score", "note": f"Semi-NMF with K={cfg.n_concepts} fitted at each layer"}


def conclude(state: DemoState) -> None:
    """The paper's qualitative claims, checked against the numbers (see `findings.py`)."""
    cfg = state.cfg
    state.results.update(
        word=state.word,
        layer=cfg.layer,
        model="toy DePALM (lmm_concepts.zoo)",
        n_train=len(state.stores["train"]),
        n_test=len(state.stores["test"]),
        funnel={split: [[k.replace("_", " "), int(v)] for k, v in store.funnel.items()]
                for split, store in state.stores.items()},
        findings=paper_findings(state.results.get("methods", {})),
        settings=asdict(cfg),
    )


def write_outputs(state: DemoState) -> None:
    """results.json, panels.json and the self-contained report.html: the report of any run (`lmm_concepts.make_report`),
    with the demo's own numbers (recovery, sweep, findings, funnel) merged in."""
    from lmm_concepts.report import make_report

    state.results["timings_s"] = {k: round(v, 2) for k, v in state.timings.items()}
    make_report(state.explanations, state.stores["train"], out=state.folder, test_store=state.stores["test"],
           model=state.model, n_show=state.cfg.n_show, extra=state.results)


STAGES: list[tuple[str, Callable[[DemoState], None]]] = [
    ("check inputs", check_inputs),
    ("load toy model", load_models),
    ("draw world", draw_world),
    ("extract", extract_splits),
    ("l1", set_l1),
    ("fit", fit_methods),
    ("ground", ground_methods),
    ("evaluate", evaluate_methods),
    ("recovery", recover),
    ("faithfulness", measure_faithfulness),
    ("layer sweep", layer_sweep),
    ("findings", conclude),
    ("report", write_outputs),
]


def run_demo(cfg: DemoConfig, stages: list[tuple[str, Callable[[DemoState], None]]] | None = None) -> DemoState:
    """Run the stages in order, with a progress bar over them; returns the final state."""
    state = DemoState(cfg=cfg, folder=Path(cfg.out))
    stages = STAGES if stages is None else stages
    bar = tqdm(stages, desc="demo", unit="stage")
    for name, stage in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        stage(state)
        state.timings[name] = time.perf_counter() - t0
    bar.close()
    return state


def demo_command(cfg: DemoConfig) -> None:
    """Entry point of `lmm-concepts demo`: run, then print the headline table and the findings."""
    state = run_demo(cfg)  # failures: one line from the CLI (DemoInputError: bad input, exit status 2)
    print(summary_text(state.results))
    print(f"\nwrote {state.folder / 'report.html'} and {state.folder / 'results.json'}")


def summary_text(results: dict[str, Any]) -> str:
    """The metrics table and the findings as plain text."""
    cols = ["recovery_auroc", "overlap", "clipscore_top1", "clipscore_top3"]
    lines = [f"word {results.get('word')!r}, layer {results.get('layer')}, "
             f"{results.get('n_train')} train / {results.get('n_test')} test samples kept", "",
             f"{'method':<10}" + "".join(f"{c:>16}" for c in cols)]
    for name, m in results.get("methods", {}).items():
        cells = "".join(f"{m.get(c):>16.3f}" if isinstance(m.get(c), (int, float)) and np.isfinite(m.get(c))
                        else f"{'-':>16}" for c in cols)
        lines.append(f"{name:<10}{cells}")
    probe = (results.get("probe") or {}).get("mean_test_auroc")
    if isinstance(probe, (int, float)):
        lines.append(f"{'probe':<10}{probe:>16.3f}   (linear probe per attribute value: the ceiling of recovery)")
    lines.append("")
    for f in results.get("findings", []):
        verdict = {True: "HOLDS", False: "DOES NOT HOLD", None: "NOT MEASURED"}[f["holds"]]
        lines.append(f"[{verdict}] {f['claim']}: {f['detail']}")
    return "\n".join(lines)
