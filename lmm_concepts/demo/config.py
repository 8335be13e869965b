"""The demo's options (also its `--help` and the `settings` saved in results.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lmm_concepts.dictionary.registry import learners


def default_methods() -> list[str]:
    """The learners registered as compared by the demo (`register_learner(..., demo=True)`), in their order."""
    return [name for name, entry in learners().items() if entry.demo]


#: the demo's default methods, as registered when the package was imported
METHODS: tuple[str, ...] = tuple(default_methods())


@dataclass
class DemoConfig:
    """Run the whole method on the embedded toy model and write report.html + results.json."""

    out: str
    """output folder (refused if it exists, unless --overwrite)"""
    word: str = "circle"
    """target word: a shape noun of the synthetic world (plurals are matched too)"""
    overwrite: bool = False
    """replace a previous demo's outputs in --out (refused if --out holds anything else)"""
    replace: list[str] = field(default_factory=list)
    """with --overwrite: entries of --out that the demo did not write and may delete too (names inside --out)"""
    toy: str = ""
    """a folder written by `lmm-concepts train-toy` ("" uses the weights shipped in the package)"""
    n_train: int = 1500
    """training images drawn from the world (about a fifth hold the word)"""
    n_test: int = 750
    """test images drawn from the world"""
    n_concepts: int = 20
    """K, concepts per method (the paper's COCO setting)"""
    l1: str = "cv"
    """Semi-NMF sparsity l1, shared by the random dictionary: "cv" (chosen on the train split among l1 = 0.1, 0.03, 0.01,
    0.003 x the rows' RMS norm by two-fold recovery, see demo/l1_choice.py), a number (absolute: scikit-learn's
    alpha, the reference code's 1.0; the paper's lambda is 2*l1) or a rule resolved on train ("rms:0.01", "active:10")"""
    layer: str = "final"
    """layer the methods are compared at: "final" (after the final norm, as the reference code) or a block index"""
    sweep: bool = True
    """also run Semi-NMF at every layer (the paper's layer ablation)"""
    methods: list[str] = field(default_factory=default_methods)
    """methods to compare: any registered learner (`lmm-concepts fit --help` lists them)"""
    faithfulness: bool = True
    """also measure faithfulness (does the model use each concept?) of every method at the residual layer before the
    last block, and of the compared layer's concepts"""
    n_random: int = 10
    """random directions per concept, the faithfulness control"""
    faith_samples: int = 64
    """test samples whose sequences faithfulness reruns (the first ones; 0: all). Each concept's removal reruns
    every sample it is active on once per direction, so the cost grows with samples x concepts x (1 + n_random)"""
    sae_training_samples: int = 30_000
    """samples the SAE baseline sees in training (sae-lens SAETrainer; epochs x kept samples)"""
    n_words: int = 15
    """grounded words per concept"""
    n_images: int = 5
    """most activating samples shown per concept"""
    n_show: int = 12
    """test images shown with their top-3 concepts"""
    batch_size: int = 64
    """images per captioning batch"""
    seed: int = 0
    """seed of the world and of every learner"""
    device: str = "cpu"
    """torch device ("cpu", "cuda", ...)"""
