"""Progress of long fits: a tqdm bar when asked, and log records always (the library never prints).

A learner's `progress` option: True shows a bar on stderr, False none, None (the default) follows the process-wide
default, False for the library and True under the `lmm-concepts` command (`set_default_progress`; the environment
variable LMM_CONCEPTS_PROGRESS=0 turns bars off there). Whatever the bar, every iteration (or epoch) is a log record
of the module's logger: INFO at most every `LOG_EVERY_S` seconds and for each epoch, DEBUG otherwise, so a fit of
hours tells where it is with `logging.basicConfig(level=logging.INFO)`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENV = "LMM_CONCEPTS_PROGRESS"
#: seconds between two INFO records of the same fit (the others are DEBUG)
LOG_EVERY_S = 30.0

_default = False


def set_default_progress(enabled: bool) -> None:
    """What `progress=None` means from now on in this process (the CLI sets True unless LMM_CONCEPTS_PROGRESS=0)."""
    global _default
    _default = bool(enabled) and os.environ.get(ENV, "").strip() not in ("0", "false", "no")


def resolve_progress(progress: bool | None) -> bool:
    return _default if progress is None else bool(progress)


class FitProgress:
    """One fit's progress: `step()` per unit of work (bar only), `report()` per iteration or epoch with its objective
    (bar's postfix and a log record), `close()` with how it ended (INFO)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        progress: bool | None,
        total: int | None = None,
        initial: int = 0,
        unit: str = "it",
        log: bool = True,
    ):
        self.logger, self.what, self.log = logger, what, log
        self._last_info = time.monotonic()
        self.bar: Any = None
        if resolve_progress(progress):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=what, unit=unit, dynamic_ncols=True)
        if log:
            logger.info("%s: started", what)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def report(self, label: str, objective: float, *, info: bool = False, **extra: Any) -> None:
        """`label` ("iteration 12", "epoch 3/10") done with `objective`; `info` forces an INFO record."""
        if self.bar is not None:
            self.bar.set_postfix(objective=f"{objective:.6g}", **extra, refresh=False)
        if not self.log:
            return
        now = time.monotonic()
        level = logging.DEBUG
        if info or now - self._last_info >= LOG_EVERY_S:
            level, self._last_info = logging.INFO, now
        if self.logger.isEnabledFor(level):
            more = "".join(f", {k} {v}" for k, v in extra.items())
            self.logger.log(level, "%s: %s, objective %.6g%s", self.what, label, objective, more)

    def close(self, outcome: str) -> None:
        self._close_bar()
        if self.log:
            self.logger.info("%s: %s", self.what, outcome)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> FitProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close_bar()  # after an exception: the bar goes, the error tells the rest


class _TqdmHandler(logging.Handler):
    """Log records on stderr through `tqdm.write`, so they do not break a bar being drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        import sys

        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)


@contextmanager
def command_reporting(logger_name: str = "lmm_concepts") -> Iterator[None]:
    """While a CLI command runs: bars on by default (unless LMM_CONCEPTS_PROGRESS=0) and the package's INFO
    records on stderr; both restored afterwards (tests call the CLI in-process)."""
    global _default
    saved = _default
    set_default_progress(True)
    logger = logging.getLogger(logger_name)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        _default = saved
