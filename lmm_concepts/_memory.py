"""Anonymous resident memory (RssAnon: heap and tensors, not file-backed pages such as memory-mapped shards).

The memory goals of extraction and online fitting are stated in RssAnon, so tests and benchmarks measure it here.
"""

from __future__ import annotations

import threading


def rss_anon_mb() -> float:
    """This process's RssAnon in MiB, read from /proc/self/status (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status: memory is measured on Linux only")


class PeakRssAnon:
    """Samples RssAnon in a background thread: `with PeakRssAnon() as m: ...`, then `m.peak_mb`."""

    def __init__(self, every: float = 0.001):
        self.peak_mb = rss_anon_mb()
        self._every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak_mb = max(self.peak_mb, rss_anon_mb())

    def __enter__(self) -> PeakRssAnon:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_anon_mb())


def peak_rss_anon_mb(fn, every: float = 0.001) -> float:
    """Peak RssAnon in MiB while `fn()` runs."""
    with PeakRssAnon(every) as m:
        fn()
    return m.peak_mb
