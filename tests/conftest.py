"""Suite-wide settings: hypothesis without wall-clock deadlines (the suite must pass while
another process keeps both cores busy; a property is about values, not speed), and which
tests share one pytest-xdist worker."""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, settings

import agent.cli.stack
from tests import ports, scheduling

settings.register_profile("qos-scout", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qos-scout")


# How the suite is spread over pytest-xdist's workers: tests/scheduling.py.
pytest_xdist_make_scheduler = scheduling.pytest_xdist_make_scheduler


def _stack_port(kind: int = socket.SOCK_STREAM) -> int:
    return ports.free_port(kind)


# The process stack (agent/cli/stack.py, the demo's) picks its ports with bind(0); in the
# tests it takes them from tests/ports.py, out of the way of the other worker. Set before
# any test module imports the name.
agent.cli.stack.free_port = _stack_port
