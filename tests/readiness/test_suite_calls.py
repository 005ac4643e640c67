"""The readiness suite runs every probe through the calls it is given (on the agent: the
scheduler and the spool): the RTT sampler through `call_probe`, the capacity ramp's
simultaneous streams through `call_streams`, one call per step with the step's size."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.readiness.suite import run_readiness
from agent.wire.readiness import ReadinessOptions
from agent.wire.results import ProbeResult, utcnow

CLEAN = {"source": "stream", "packets_sent": 250, "lost": 0, "jitter_ms": 1.0, "mos": 4.4}


def _result(probe: str, target: str, measurement: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        probe=probe, target=target, started_at=utcnow(), duration_ms=1.0, success=True,
        measurement=measurement,
    )  # fmt: skip


async def test_the_sampler_and_the_ramp_go_through_the_suite_calls() -> None:
    singles: list[tuple[str, str]] = []
    steps: list[tuple[str, str, int, dict[str, Any]]] = []

    async def call_probe(name: str, target: str, options: dict[str, Any]) -> ProbeResult:
        singles.append((name, target))
        await asyncio.sleep(0.01)  # the time an ICMP round takes, so the sampler yields
        return _result(name, target, {"rtts_ms": [5.0, 6.0], "jitter_rfc3550_ms": 0.5})

    async def call_streams(
        name: str, target: str, options: dict[str, Any], n: int
    ) -> list[ProbeResult]:
        steps.append((name, target, n, options))
        await asyncio.sleep(0.05)  # the step's duration: the sampler runs beside it
        m = {"out": CLEAN, "back": CLEAN, "rtt_ms": {"p95": 6.0, "median": 5.0}}
        return [_result(name, target, m) for _ in range(n)]

    opts = ReadinessOptions(responder="192.0.2.7", checks=["capacity"], calls=3, max_calls=4)
    report = await run_readiness(opts, call_probe, call_streams=call_streams)
    assert [(name, n) for name, _, n, _ in steps] == [("udp", 1), ("udp", 2), ("udp", 4)]
    assert all(t == "192.0.2.7:862" and o["codec"] == "G711_PLC" for _, t, _, o in steps)
    assert singles and set(singles) == {("icmp", "192.0.2.7")}  # the RTT sampler
    assert report.capacity_calls == 4 and report.check("capacity.calls").status == "pass"
