"""The command line: one sub-command per pipeline stage.

Each command is a config dataclass (its fields, with their docstrings, become the options and `--help`;
the same dataclass is saved as JSON beside the results) and a function that takes it. Commands are listed
in `COMMANDS` as import paths: `<command> --help` imports the config's (light) module only and the function's
module is imported to run, so no `--help` imports torch or sae-lens (about 1 s instead of 5-20 s).

`--config FILE` (.yaml or .json) gives any command its options from a file; flags on the command line override it
(`lmm_concepts.config_file`). While a command runs, fits draw progress bars (LMM_CONCEPTS_PROGRESS=0: none) and the
package's INFO log records go to stderr (`lmm_concepts._progress`).

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
from typing import Any, NamedTuple

from lmm_concepts._progress import command_reporting
from lmm_concepts.config_file import OPTION as CONFIG_OPTION
from lmm_concepts.config_file import config_defaults, read_config_file, split_config_option
from lmm_concepts.errors import InputError

CONFIG_HELP = (
    "a .yaml or .json file of this command's options (option: value, names as below); options given on "
    "the command line override it"
)

DEBUG_ENV = "LMM_CONCEPTS_DEBUG"


class Command(NamedTuple):
    """A command: where its config dataclass and its function live ("module:name"), and its one-line help.

    The config's module is imported for `<command> --help` and must stay light (no torch, no sae-lens: the test
    `tests/test_cli_fast.py` checks it); the function's module is imported only to run the command."""

    config: str
    run: str
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "lmm_concepts.demo.config:DemoConfig",
        "lmm_concepts.demo.pipeline:demo_command",
        "the whole method on the embedded toy model: report.html + results.json",
    ),
    "report": Command(
        "lmm_concepts.report.command:ReportConfig",
        "lmm_concepts.report.command:report_command",
        "the HTML report of explanations (+ store, evaluation), or a saved report re-rendered",
    ),
    "export": Command(
        "lmm_concepts.export.command:ExportConfig",
        "lmm_concepts.export.command:export_command",
        "write concepts in a feature dashboard's layout (Neuronpedia, SAEDashboard)",
    ),
    "train-toy": Command(
        "lmm_concepts.zoo.config:TrainToyConfig",
        "lmm_concepts.zoo.recipe:train_toy",
        "train the toy DePALM (CLIP, LM, connector) on the synthetic world; about 10 min on 2 CPU cores",
    ),
    "extract": Command(
        "lmm_concepts.extraction.command:ExtractConfig",
        "lmm_concepts.extraction.command:run",
        "caption a dataset and store the word's representations (resumable)",
    ),
    "ground": Command(
        "lmm_concepts.grounding.command:GroundConfig",
        "lmm_concepts.grounding.command:run",
        "ground a dictionary's concepts in words (logit lens) and most activating images",
    ),
    "evaluate": Command(
        "lmm_concepts.metrics.command:EvaluateConfig",
        "lmm_concepts.metrics.command:run_evaluate",
        "score explanations on a test store: CLIPScore, BERTScore, overlap, baselines, faithfulness",
    ),
    "sweep": Command(
        "lmm_concepts.metrics.command:SweepConfig",
        "lmm_concepts.metrics.command:run_sweep",
        "layer ablation or K sweep: fit, ground and evaluate per point (resumable)",
    ),
    "fit": Command(
        "lmm_concepts.dictionary.fit_cli:FitConfig",
        "lmm_concepts.dictionary.fit_cli:fit",
        "learn a concept dictionary (Semi-NMF or a baseline) and save it for sae-lens",
    ),
}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def config_class(name: str) -> type:
    """The config dataclass of command `name` (imports only its light module)."""
    return _load(COMMANDS[name].config)


def command_function(name: str) -> Callable[[Any], Any]:
    """The function running command `name` (imports what the command needs)."""
    return _load(COMMANDS[name].run)


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


def build_parser(command: str | None = None, config: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s options are built (importing just its config's module), with the
    values of `config` (a `--config` file's mapping, checked against the options) as their defaults."""
    import simple_parsing

    class CommandParser(_OneLineErrors, simple_parsing.ArgumentParser):
        pass

    parser = _Parser(
        prog="lmm-concepts",
        description=__doc__.splitlines()[0],
        epilog=f"--debug (or {DEBUG_ENV}=1) prints a failure's traceback as well as its one-line message",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name, (_, _, help_) in COMMANDS.items():
        # options accept --n-concepts as well as --n_concepts
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            add_option_string_dash_variants=simple_parsing.DashVariant.UNDERSCORE_AND_DASH,
        )
        p.add_argument(CONFIG_OPTION, metavar="FILE", help=CONFIG_HELP)
        if name == command:
            cfg_cls = config_class(name)
            p.add_arguments(cfg_cls, dest="cfg")
            if config:
                p.set_defaults(cfg=config_defaults(cfg_cls, config))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        config_path, argv = split_config_option(argv)
    except InputError as err:
        raise fail("lmm-concepts", str(err), 2) from None
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        raise fail("lmm-concepts", f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", 2)
    prog = f"lmm-concepts {command}" if command else "lmm-concepts"
    try:
        config = read_config_file(config_path) if config_path is not None else None
        if config is not None and command is None:
            raise InputError(
                f"{CONFIG_OPTION} holds a command's options: lmm-concepts COMMAND {CONFIG_OPTION} FILE"
            )
        parser = build_parser(command, config)
    except InputError as err:
        raise fail(prog, str(err), 2) from None
    args = parser.parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        raise SystemExit(2)
    cfg = args.cfg
    assert dataclasses.is_dataclass(cfg)
    fn = command_function(args.command)
    try:
        with command_reporting():  # progress bars on, the library's INFO records on stderr
            fn(cfg)
    except (SystemExit, KeyboardInterrupt) as err:
        if isinstance(err, SystemExit) and not isinstance(err.code, str):
            raise  # an exit status already (argparse, --help)
        if debug:
            traceback.print_exc()
        if isinstance(err, KeyboardInterrupt):
            raise fail(
                prog, "interrupted (a resumable command continues where it stopped when rerun)", 130
            ) from None
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
