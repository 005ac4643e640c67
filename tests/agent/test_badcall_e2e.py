"""The bad call, end to end: a real agent runs the udp voice probe every second across a
namespace link to a real responder; nftables drops 20 % of the outbound voice packets for a
while. The bad-call window around that time marks the impaired measurements and not the
clean ones (graded by the site's rules), and attaching it puts them in a ticket (API and
page).

The collector and the agent run in namespace a (the agent reaches the collector on a's
loopback), the responder in b. The test talks to the collector from a worker thread that
joined namespace a (setns is per thread; processes it starts inherit it).
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after the project: not tests/agent

import netlab

from agent.cli.stack import Stack, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]
T = TypeVar("T")
CLONE_NEWNET = 0x40000000
LOSS_PCT = 20.0
VOICE = {"probe": "udp", "interval_s": 1,
         "options": {"duration_s": 1.0, "wait_s": 1.0, "packet_rate": 100}}  # fmt: skip


class InNamespace:
    """One worker thread inside a network namespace: run(fn) calls fn there."""

    def __init__(self, ns: str) -> None:
        self.pool = ThreadPoolExecutor(1, initializer=self._enter, initargs=(ns,))

    @staticmethod
    def _enter(ns: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
        finally:
            os.close(fd)

    def run(self, fn: Callable[[], T]) -> T:
        return self.pool.submit(fn).result(timeout=120)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[netlab.NetLab, Stack, InNamespace]]:
    reason = netlab.skip_reason()
    if reason:
        pytest.skip(reason)
    with netlab.NetLab("qsbc") as lab:
        p = lab.popen_in("b", [sys.executable, "-m", "agent.cli.main", "responder",
                               "--twamp-port", "862", "--bandwidth-port", "5201",
                               "--sip-port", "off", "--sip-tls-port", "off",
                               "--natprobe-port", "off"],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert p.stdout is not None
        assert p.stdout.readline().startswith("responder ready")
        inside = InNamespace(lab.ns("a"))
        stack = Stack(tmp_path)
        try:
            yield lab, stack, inside
        finally:
            inside.run(stack.close)
            inside.close()


def _stored(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in stack.results() if r["probe"] == "udp"]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_bad_call_window_marks_the_impaired_measurements_and_goes_into_a_ticket(world):
    lab, stack, inside = world
    target = f"{lab.addr('b')}:862"

    def start() -> None:
        stack.start_collector()
        token = stack.create_tenancy("portal-partner", "Branch office")
        config = stack.write_agent_config({"voice": {**VOICE, "targets": [target]}})
        stack.enroll(config, token)
        stack.start_agent(config)

    inside.run(start)

    def results_after(t: float, n: int) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            got = [r for r in _stored(stack) if _ts(r["started_at"]) >= t]
            return got if len(got) >= n else None

        return inside.run(lambda: wait_for(f"{n} udp results after {t}", enough, 90.0))

    results_after(0, 2)  # clean ones first
    on_at = time.time()
    loss = lab.nft_loss("a", lab.iface("a", "b"), LOSS_PCT, "out", match="meta l4proto udp",
                        regular=True)  # fmt: skip
    results_after(on_at, 3)
    seen, dropped = loss.counts()
    loss.remove()
    off_at = time.time()
    assert dropped > 0 and abs(dropped - seen * LOSS_PCT / 100) <= 1
    results_after(off_at, 2)

    at = datetime.fromtimestamp((on_at + off_at) / 2, UTC).isoformat()
    body = {"at": at, "before_min": 10, "after_min": 10}

    def check() -> dict[str, Any]:
        win = stack.api("GET", f"/api/v1/sites/{stack.site_id}/badcall",
                        params={"at": at, "before_min": 10, "after_min": 10})  # fmt: skip
        ticket = stack.api("POST", f"/api/v1/sites/{stack.site_id}/badcall/attach", json=body)
        shown = stack.api("GET", f"/api/v1/tickets/{ticket['id']}")
        ui = httpx.Client(base_url=stack.collector_url, timeout=30)
        form = ui.get("/ui/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        login = {"csrf": csrf.group(1), "email": stack.admin_email,
                 "password": stack.admin_password}  # fmt: skip
        assert ui.post("/ui/login", data=login).status_code == 303
        page = ui.get(f"/ui/tickets/{ticket['id']}").text
        return {"win": win, "ticket": shown, "page": page}

    got = inside.run(check)
    win = got["win"]
    udp = [r for r in win["results"] if r["probe"] == "udp"]
    duration = VOICE["options"]["duration_s"] + VOICE["options"]["wait_s"]
    clean = [r for r in udp if _ts(r["started_at"]) + duration < on_at
             or _ts(r["started_at"]) > off_at]  # fmt: skip
    impaired = [r for r in udp if on_at < _ts(r["started_at"])
                and _ts(r["started_at"]) + duration < off_at]  # fmt: skip
    assert len(clean) >= 3 and len(impaired) >= 1, (len(clean), len(impaired))
    for r in impaired:
        [check_out] = [c for c in r["checks"] if c["rule"] == "loss_out"]
        assert check_out["value"] > check_out["critical"]  # about 20 % against 5 %
        assert r["worst"] == "critical" and check_out["level"] == "critical"
    for r in clean:
        assert r["measurement"]["out"]["loss_pct"] == 0.0
        assert r["worst"] == "ok", r["checks"]
    # the ticket holds the window with the same marks, and its page shows them
    [kept] = got["ticket"]["evidence"]["bad_calls"].values()
    marks = {r["id"]: r["worst"] for r in kept["results"]}
    assert all(marks[r["id"]] == "critical" for r in impaired)
    assert all(marks[r["id"]] == "ok" for r in clean)
    assert got["ticket"]["severity"] == "critical"
    page = got["page"]
    assert "Bad call at" in page
    assert page.count('data-worst="critical"') >= len(impaired)
