"""The command line: one sub-command per pipeline stage.

Each command is a config dataclass (its fields, with their docstrings, become the options and `--help`;
the same dataclass is saved as JSON beside the results) and a function that takes it. Commands are listed
in `COMMANDS` as import paths and imported only when run, so `lmm-concepts --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Callable, Sequence

# name -> ("module", "ConfigClass", "function", "one-line help")
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "demo": ("lmm_concepts.demo.pipeline", "DemoConfig", "demo_command",
             "the whole method on the embedded toy model: report.html + results.json"),
    "report": ("lmm_concepts.report.command", "ReportConfig", "report_command",
               "the HTML report of explanations (+ store, evaluation), or a saved report re-rendered"),
    "export": ("lmm_concepts.export.command", "ExportConfig", "export_command",
               "write concepts in a feature dashboard's layout (Neuronpedia, SAEDashboard)"),
    "train-toy": ("lmm_concepts.zoo.recipe", "TrainToyConfig", "train_toy",
                  "train the toy DePALM (CLIP, LM, connector) on the synthetic world; about 10 min on 2 CPU cores"),
    "extract": (
        "lmm_concepts.extraction.command",
        "ExtractConfig",
        "run",
        "caption a dataset and store the word's representations (resumable)",
    ),
    "ground": (
        "lmm_concepts.grounding.command",
        "GroundConfig",
        "run",
        "ground a dictionary's concepts in words (logit lens) and most activating images",
    ),
    "evaluate": (
        "lmm_concepts.metrics.command",
        "EvaluateConfig",
        "run_evaluate",
        "score explanations on a test store: CLIPScore, BERTScore, overlap, baselines, faithfulness",
    ),
    "sweep": (
        "lmm_concepts.metrics.command",
        "SweepConfig",
        "run_sweep",
        "layer ablation or K sweep: fit, ground and evaluate per point (resumable)",
    ),
    "fit": ("lmm_concepts.dictionary.fit_cli", "FitConfig", "fit", "learn a concept dictionary (Semi-NMF or a baseline) and save it for sae-lens"),
}


def _resolve(name: str) -> tuple[type, Callable]:
    module, cfg_name, fn_name, _ = COMMANDS[name]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, fn_name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s options are built (importing just that command's module)."""
    import simple_parsing

    parser = argparse.ArgumentParser(prog="lmm-concepts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=simple_parsing.ArgumentParser)
    for name, (_, _, _, help_) in COMMANDS.items():
        # options accept --n-concepts as well as --n_concepts
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            add_option_string_dash_variants=simple_parsing.DashVariant.UNDERSCORE_AND_DASH,
        )
        if name == command:
            cfg_cls, _ = _resolve(name)
            p.add_arguments(cfg_cls, dest="cfg")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        raise SystemExit(f"lmm-concepts: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        raise SystemExit(2)
    _, fn = _resolve(args.command)
    cfg = args.cfg
    assert dataclasses.is_dataclass(cfg)
    fn(cfg)


if __name__ == "__main__":
    main()
