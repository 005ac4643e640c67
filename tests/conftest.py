"""Suite-wide settings: hypothesis without wall-clock deadlines (the suite must pass while
another process keeps both cores busy; a property is about values, not speed), and which
tests share one pytest-xdist worker."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, settings

import agent.cli.stack
from tests import ports

settings.register_profile("qos-scout", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qos-scout")


# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). Tests
# that hold a fixed port on the host's loopback (the responder's and collector's defaults:
# the docs' commands verbatim, the demo, the standalone readiness run) or start peers on
# well-known ports (SIP's 5060, Prometheus', HAProxy's) run one after another on one
# worker; everything else (namespaces have random names, servers take free ports) is spread
# over both, file by file.
SERIAL = (
    "tests/docs/",
    "tests/deploy/",
    "tests/sip/",
    "tests/agent/test_demo.py",
    "tests/readiness/test_loopback.py",
    "tests/readiness/test_natprobe.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of one file stay on one worker (their module-scoped fixtures are built
    once), the SERIAL ones all on one."""
    root = config.rootpath
    for item in items:
        rel = item.path.relative_to(root).as_posix()
        item.add_marker(pytest.mark.xdist_group("serial" if rel.startswith(SERIAL) else rel))


def _stack_port(kind: int = socket.SOCK_STREAM) -> int:
    return ports.free_port(kind)


# The process stack (agent/cli/stack.py, the demo's) picks its ports with bind(0); in the
# tests it takes them from tests/ports.py, out of the way of the other worker. Set before
# any test module imports the name.
agent.cli.stack.free_port = _stack_port
