"""Shared fixtures. Every test runs offline: hub access is switched off and sockets to anything but
this machine are refused, so a test that passes here proves the code loads from local files only."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not host.startswith(_LOOPBACK):
            raise OSError(f"network access is blocked in tests (tried to reach {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network():
    socket.socket.connect = _guarded_connect
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def device() -> str:
    """`LMM_CONCEPTS_TEST_DEVICE=cuda pytest` runs the device-aware tests on a GPU."""
    return os.environ.get("LMM_CONCEPTS_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny problems run on one torch thread: on a busy 2-core machine, 2-thread GEMMs on small matrices stall in
    spin-waits (measured 30x slower). Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
