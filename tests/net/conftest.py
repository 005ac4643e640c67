"""Fixtures for the network-probe tests: makes tests/netlab.py importable, skips without root."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netlab


@pytest.fixture
def need_root() -> None:
    reason = netlab.skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def lab(need_root: None) -> Iterator[netlab.NetLab]:
    """a <-> b on one veth pair."""
    with netlab.NetLab("qs") as lab:
        yield lab


@pytest.fixture
def rlab(need_root: None) -> Iterator[netlab.NetLab]:
    """a <-> r <-> b, with r forwarding."""
    with netlab.NetLab("qs", router=True) as lab:
        yield lab
