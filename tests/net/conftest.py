"""Fixtures for the network-probe tests: makes tests/netlab.py importable, skips without root."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netlab

from agent.responder.reflector import TwampReflector


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


# Our services only: the SIP and NAT-probe services have their own tests.
ONLY_OURS = ["--sip-port", "off", "--sip-tls-port", "off", "--natprobe-port", "off"]

# Real-time priority for a probe whose loss is "no answer read within timeout_s" (trace, mtu):
# it sleeps in select() and never spins, so this only makes its reads punctual while other
# programs load every core. An ordinary process can wait longer than a 0.15 s round behind
# busy SCHED_FIFO threads (a concurrent test's RTP sender runs at priority 10).
REALTIME_PRIORITY = 20

PROBE_SNIPPET = (
    "import asyncio, contextlib, json, os, sys\n"
    "from agent.probes import run_probe\n"
    "if int(sys.argv[4]):\n"
    "    with contextlib.suppress(OSError):  # a container may grant no real-time budget\n"
    "        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[4])))\n"
    "r = asyncio.run(run_probe(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))\n"
    "print(json.dumps(r.to_json_dict()))\n"
)


def probe_in(
    lab: netlab.NetLab,
    node: str,
    probe: str,
    target: str,
    options: dict,
    *,
    realtime: bool = False,
) -> dict:
    """Run a probe inside a namespace (a real process there) and return its result dict.

    realtime: run it at SCHED_FIFO priority (its threads inherit it), for probes with short
    per-answer timeouts; not for CPU-bound ones (bandwidth), which would starve their peer.
    """
    import json

    prio = str(REALTIME_PRIORITY if realtime else 0)
    out = lab.run_in(
        node,
        [sys.executable, "-c", PROBE_SNIPPET, probe, target, json.dumps(options), prio],
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_responder(lab: netlab.NetLab, node: str, twamp: str = "862", bw: str = "5201") -> None:
    """Start `qos-scout responder` in a namespace and wait until it listens."""
    import subprocess

    p = lab.popen_in(
        node,
        [sys.executable, "-m", "agent.cli.main", "responder", "--twamp-port", twamp,
         "--bandwidth-port", bw, *ONLY_OURS],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("responder ready"), f"responder did not start: {line!r}"


@pytest.fixture
def our_reflector() -> Iterator[TwampReflector]:
    """Our TWAMP-light/STAMP reflector on a loopback port, in its own event loop thread."""
    loop = asyncio.new_event_loop()
    refl = TwampReflector("127.0.0.1", 0)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(refl.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield refl
    asyncio.run_coroutine_threadsafe(refl.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
