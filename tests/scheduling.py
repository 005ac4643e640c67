"""How `make test` spreads the suite over pytest-xdist's workers (`-n 2`): by file, and the
fixed-port files all on one worker. Plain Python, so tests/test_scheduling.py can load it in
a scratch project."""

from __future__ import annotations

from typing import Any

import pytest

# `make test` runs the suite on two pytest-xdist workers (`-n 2`). Tests that hold a fixed
# port on the host's loopback (the responder's and collector's defaults: the docs' commands
# verbatim, the demo, the standalone readiness run) or start peers on well-known ports
# (SIP's 5060, Prometheus', HAProxy's) run one after another on one worker; everything
# else (namespaces have random names, servers take free ports) is spread over both, file
# by file, so a file's tests run in order on one worker and its module-scoped fixtures are
# built once.
SERIAL = (
    "tests/docs/",
    "tests/deploy/",
    "tests/sip/",
    "tests/agent/test_demo.py",
    "tests/readiness/test_loopback.py",
    "tests/readiness/test_natprobe.py",
)


def scope_of(nodeid: str) -> str:
    """The unit a worker takes whole: "serial" for the SERIAL files, else the file."""
    path = nodeid.split("::", 1)[0]
    return "serial" if path.startswith(SERIAL) else path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scope scheduling with `scope_of` as the scope. (Its `loadgroup` mode
    reads `xdist_group` marks by rewriting each test's node id, which pytest 9.2 no longer
    lets a plugin do: the marks were silently ignored and every test went anywhere.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByScope(config, log)
