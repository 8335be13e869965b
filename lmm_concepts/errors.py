"""The library's error type for bad input, which the command line tells apart from other failures.

`InputError` means the caller gave something the library cannot use (an option out of range, a missing or damaged
file, a folder holding something else); its message names the option or file and the fix. It subclasses
`ValueError`, so `except ValueError` keeps catching it. `lmm-concepts` prints any failure as one line and exits with
status 2 for an `InputError`, 1 for anything else (see `lmm_concepts.cli`).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the option or file at fault and how to fix it."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the caller named does not exist (still a `FileNotFoundError` for existing callers)."""


class ConflictingOutputError(InputError, FileExistsError):
    """An output path holds something this run must not replace (still a `FileExistsError` for existing callers)."""
