"""A collector, a responder, a jittery loopback path and an enrolled agent, as real processes.

The voice path to the responder goes through the seeded delay relay of tests/netlab.py
(on loopback, no root needed), so a readiness test run through the collector fails its
upstream jitter check for a real reason.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netlab

from agent.cli.stack import Stack, free_port, free_port_both

JITTER = netlab.DelaySchedule(5.0, 120.0, seed=9)  # about 40 ms of RFC 3550 jitter upstream


@dataclass
class ReadinessStack:
    stack: Stack
    options: dict[str, Any]

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.stack.collector_url}{path}", timeout=30,
                             headers={"Authorization": f"Bearer {self.stack.partner_key}"},
                             **kw)  # fmt: skip


def readiness_stack(workdir: Path) -> Iterator[ReadinessStack]:
    stack = Stack(workdir)
    relay = None
    try:
        stack.start_collector()
        token = stack.create_tenancy("tier1-partner", "Main office")
        twamp, bw, nat = (
            free_port(socket.SOCK_DGRAM),
            free_port_both(),
            free_port(socket.SOCK_DGRAM),
        )
        args = ["--bind", "127.0.0.1", "--twamp-port", str(twamp), "--bandwidth-port", str(bw),
                "--natprobe-port", str(nat), "--sip-port", "off"]  # fmt: skip

        def bw_open() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", bw)) == 0

        stack.start_responder(args, bw_open)
        relay = netlab.start_relay_local(0, ("127.0.0.1", twamp), fwd=JITTER)
        config = stack.write_agent_config({}, site={"responder": "127.0.0.1"},
                                          jobs={"wait_s": 2})  # fmt: skip
        stack.enroll(config, token)
        stack.start_agent(config)
        options = {"twamp_port": relay.port, "natprobe_port": nat, "bandwidth_port": bw,
                   "checks": ["voice", "dscp", "nat"], "voice_s": 3,
                   "nat_intervals_s": [0.5]}  # fmt: skip
        deadline = time.monotonic() + 30
        while not any(a.get("last_seen_at") for a in stack.api("GET", "/api/v1/agents")):
            if time.monotonic() > deadline:
                raise RuntimeError("the agent never showed up")
            time.sleep(0.2)
        yield ReadinessStack(stack, options)
    finally:
        if relay is not None:
            relay.stop()
        stack.close()
