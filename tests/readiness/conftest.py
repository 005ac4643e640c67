"""Fixtures for the readiness tests: the namespace test network and a responder in it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netlab


@pytest.fixture
def rlab() -> Iterator[netlab.NetLab]:
    """a <-> r <-> b, with r forwarding (skips without root)."""
    reason = netlab.skip_reason()
    if reason:
        pytest.skip(reason)
    with netlab.NetLab("qr", router=True) as lab:
        yield lab
