"""Loading a bf16 checkpoint of a few hundred million parameters peaks at <= 1.5x the model's size (slow)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_loading_peak_memory_is_bounded():
    from bench_loading import measure

    stats = measure(layers=24, hidden=1024)
    assert stats["n_params"] > 2e8
    assert stats["peak_over_size"] <= 1.5, stats
