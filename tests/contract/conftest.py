"""Fixtures of the contract tests: one collector and one Prometheus for the whole package
(starting them is the costly part), the namespace labs, and a responder on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# appended, not prepended: tests/agent must not shadow the agent package
sys.path.append(str(Path(__file__).resolve().parents[1]))

import netlab

from tests.contract.harness import Contract


@pytest.fixture(scope="package")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    c = Contract(tmp_path_factory.mktemp("contract"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def need_root() -> None:
    reason = netlab.skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def lab(need_root: None) -> Iterator[netlab.NetLab]:
    """a (the site) <-> b (the far end) on one veth pair."""
    with netlab.NetLab("qc") as lab:
        yield lab


@pytest.fixture
def rlab(need_root: None) -> Iterator[netlab.NetLab]:
    """a (the site) <-> r (a router) <-> b (the far end)."""
    with netlab.NetLab("qc", router=True) as lab:
        yield lab
