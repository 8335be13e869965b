"""The command line: one sub-command per pipeline stage.

Each command is a config dataclass (its fields, with their docstrings, become the options and `--help`;
the same dataclass is saved as JSON beside the results) and a function that takes it. Commands are listed
in `COMMANDS` as import paths and imported only when run, so `lmm-concepts --help` stays fast.

A failure prints one line, `lmm-concepts <command>: error: <what and the fix>`, and exits with status 2 for bad
input (`lmm_concepts.errors.InputError`, a bad option) or 1 for any other failure; `--debug` (anywhere on the line)
or LMM_CONCEPTS_DEBUG=1 prints the traceback as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from lmm_concepts.errors import InputError

DEBUG_ENV = "LMM_CONCEPTS_DEBUG"

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


class CommandError(SystemExit):
    """How `main` ends on a failure: `code` is the exit status; the message (already printed) is its str."""

    def __init__(self, message: str, status: int):
        super().__init__(status)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(prog: str, message: str, status: int) -> CommandError:
    """Print `message` as one line on stderr; the exception that ends the command with `status`."""
    line = " ".join(str(message).split())
    print(f"{prog}: error: {line}", file=sys.stderr)
    return CommandError(line, status)


class _OneLineErrors:
    """argparse's errors as one line (the usage is a --help away), exit status 2."""

    def error(self, message: str):
        raise fail(self.prog, f"{message} (see {self.prog} --help)", 2)


class _Parser(_OneLineErrors, argparse.ArgumentParser):
    pass


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s options are built (importing just that command's module)."""
    import simple_parsing

    class CommandParser(_OneLineErrors, simple_parsing.ArgumentParser):
        pass

    parser = _Parser(prog="lmm-concepts", description=__doc__.splitlines()[0],
                     epilog=f"--debug (or {DEBUG_ENV}=1) prints a failure's traceback as well as its one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
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
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        raise fail("lmm-concepts", f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", 2)
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        raise SystemExit(2)
    _, fn = _resolve(args.command)
    cfg = args.cfg
    assert dataclasses.is_dataclass(cfg)
    prog = f"lmm-concepts {args.command}"
    try:
        fn(cfg)
    except (SystemExit, KeyboardInterrupt) as err:
        if isinstance(err, SystemExit) and not isinstance(err.code, str):
            raise  # an exit status already (argparse, --help)
        if debug:
            traceback.print_exc()
        if isinstance(err, KeyboardInterrupt):
            raise fail(prog, "interrupted (a resumable command continues where it stopped when rerun)", 130) from None
        raise fail(prog, err.code, 2) from None
    except Exception as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, InputError):
            raise fail(prog, str(err), 2) from None
        hint = "" if debug else f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
        raise fail(prog, f"{type(err).__name__}: {err or type(err).__name__}{hint}", 1) from None


if __name__ == "__main__":
    main()
