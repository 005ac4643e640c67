"""Suite-wide settings: hypothesis without wall-clock deadlines (the suite must pass while
another process keeps both cores busy; a property is about values, not speed), and which
tests share one pytest-xdist worker."""

from __future__ import annotations

import socket

import httpx
from hypothesis import HealthCheck, settings

import agent.cli.stack
from tests import ports, scheduling

settings.register_profile("qos-scout", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qos-scout")


# A test's HTTP request without a timeout of its own may take 30 s, not httpx's 5 s: on a
# machine whose cores are busy elsewhere, a test server in the test's own process can take
# longer than 5 s to answer (a loaded run timed out a 401). The product's requests always
# pass their own timeout; a test about a timeout sets its own.
TEST_HTTP_TIMEOUT = httpx.Timeout(30.0)
for _fn in (httpx.request, httpx.get, httpx.options, httpx.head, httpx.post,
            httpx.put, httpx.patch, httpx.delete, httpx.Client.__init__,
            httpx.AsyncClient.__init__):  # fmt: skip
    assert _fn.__kwdefaults__ is not None and "timeout" in _fn.__kwdefaults__, _fn
    _fn.__kwdefaults__["timeout"] = TEST_HTTP_TIMEOUT

# How the suite is spread over pytest-xdist's workers: tests/scheduling.py.
pytest_xdist_make_scheduler = scheduling.pytest_xdist_make_scheduler


def _stack_port(kind: int = socket.SOCK_STREAM) -> int:
    return ports.free_port(kind)


# The process stack (agent/cli/stack.py, the demo's) picks its ports with bind(0); in the
# tests it takes them from tests/ports.py, out of the way of the other worker. Set before
# any test module imports the name.
agent.cli.stack.free_port = _stack_port
