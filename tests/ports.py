"""Loopback ports for test servers, from a range no other test process and no outgoing
connection uses: below the kernel's ephemeral range (where connect() takes its source ports
and bind(0) its answers), split between pytest-xdist workers, each port checked free for
TCP and UDP. A port picked from bind(0) could be taken by another worker's connection
before the server bound it (a full run saw `address already in use` once)."""

from __future__ import annotations

import os
import random
import socket

LOW, HIGH = 10_000, 32_000  # under ip_local_port_range's usual 32768
_rng = random.Random()


def _span() -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... or unset
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (HIGH - LOW) // max(count, 1)
    return LOW + index * width, LOW + (index + 1) * width


def _free(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(*kinds: int) -> int:
    """A port of this worker's span free on 127.0.0.1 for each of `kinds` (TCP and UDP
    when none is named)."""
    kinds = kinds or (socket.SOCK_STREAM, socket.SOCK_DGRAM)
    lo, hi = _span()
    for _ in range(200):
        port = _rng.randrange(lo, hi)
        if _free(port, kinds):
            return port
    raise RuntimeError(f"no free port on loopback in {lo}-{hi}")
