"""The readiness suite: run every check against a responder (and a SIP server) and grade it.

`run_readiness(options, call_probe, progress, call_streams)` is used both standalone
(`qos-scout readiness`, where `call_probe` is `agent.probes.run_probe`) and as the agent's
"readiness" suite job (where both go through the scheduler's lock classes and into the
spool). Every probe of the suite runs through them, the RTT sampler and the capacity
ramp's simultaneous streams (`call_streams`) included. Traffic-heavy phases run one after
another; the NAT binding test (idle sockets) and an ICMP RTT sampler (2 packets/s, drawn
as the "RTT over the test" plot) run beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.addresses import hostport
from agent.probes import PROBE_MODULES, run_probe
from agent.readiness import capacity, checks, net_checks, sip_checks
from agent.readiness.path import PathFacts, path_facts
from agent.wire.lite import ProbeResult
from agent.wire.plain import utcnow
from agent.wire.readiness import Check, RampStep, ReadinessOptions, ReadinessReport, Series, verdict

ProbeCall = Callable[[str, str, dict[str, Any]], Awaitable[ProbeResult]]
# `n` runs of one probe against one target at once: a capacity step's simultaneous calls.
StreamsCall = Callable[[str, str, dict[str, Any], int], Awaitable[list[ProbeResult]]]
Progress = Callable[[float, str], Awaitable[None]]


def streams_via(call_probe: ProbeCall) -> StreamsCall:
    """`n` concurrent `call_probe` runs, started within capacity.START_SPREAD_S of each other
    (the standalone `call_streams`; the agent's job admits a step as one scheduler run)."""
    rng = random.Random()

    async def call_streams(
        name: str, target: str, options: dict[str, Any], n: int
    ) -> list[ProbeResult]:
        async def one() -> ProbeResult:
            await asyncio.sleep(rng.uniform(0.0, capacity.START_SPREAD_S))
            return await call_probe(name, target, options)

        return list(await asyncio.gather(*(one() for _ in range(n))))

    return call_streams


async def _no_progress(fraction: float, message: str) -> None:
    return None


class _Sampler:
    """ICMP RTT samples toward the responder for the whole test (plot data only)."""

    def __init__(self, host: str, interval_s: float, t0: float, call_probe: ProbeCall) -> None:
        self.host, self.interval_s, self.t0 = host, interval_s, t0
        self.call_probe = call_probe
        self.rtt: list[tuple[float, float]] = []
        self.jitter: list[tuple[float, float]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        count = max(2, round(2.0 / self.interval_s))
        while not self._stop.is_set():
            start = time.monotonic() - self.t0
            res = await self.call_probe(
                "icmp", self.host, {"count": count, "interval_s": self.interval_s,
                                    "timeout_s": 1.0, "payload_size": 16},
            )  # fmt: skip
            m = res.measurement
            if not m:
                await asyncio.sleep(self.interval_s * count)
                continue
            for i, rtt in enumerate(m.get("rtts_ms") or []):
                if rtt is not None:
                    self.rtt.append((round(start + i * self.interval_s, 3), rtt))
            if m.get("jitter_rfc3550_ms") is not None:
                self.jitter.append((round(start + count * self.interval_s, 3),
                                    m["jitter_rfc3550_ms"]))  # fmt: skip

    def stop(self) -> None:
        self._stop.set()


def _measured(res: ProbeResult) -> dict[str, Any] | None:
    return res.measurement if res.success else None


def _error(res: ProbeResult) -> str:
    return res.error.message if res.error is not None else "unknown error"


async def run_readiness(
    opts: ReadinessOptions,
    call_probe: ProbeCall = run_probe,
    progress: Progress = _no_progress,
    call_streams: StreamsCall | None = None,
) -> ReadinessReport:
    started_at, t0 = utcnow(), time.monotonic()
    streams = call_streams or streams_via(call_probe)
    out: list[Check] = []
    series: list[Series] = []
    ramp: list[RampStep] = []
    cap_calls: int | None = None
    resp = opts.responder
    path = await path_facts(resp)
    sampler = _Sampler(resp, opts.sample_interval_s, t0, call_probe)
    sampler_task = asyncio.create_task(sampler.run())
    nat_task: asyncio.Task[ProbeResult] | None = None
    if opts.wants("nat"):

        async def nat() -> ProbeResult:
            return await call_probe(
                "nat_binding", hostport(resp, opts.natprobe_port),
                {"intervals_s": opts.nat_intervals_s},
            )  # fmt: skip

        nat_task = asyncio.create_task(nat())
    try:
        if opts.wants("gateway"):
            await progress(0.02, "default gateway")
            res = await call_probe("host", "localhost", {"sample_s": 0.2})
            m = _measured(res)
            out.append(checks.gateway_check(m) if m else checks.info(
                "network.gateway", "network", "Default gateway", _error(res)))  # fmt: skip
        if opts.wants("dns") and opts.sip_server:
            await progress(0.05, "DNS for the SIP domain")
            out += await net_checks.dns_checks(opts, call_probe)
        if opts.wants("voice") or opts.wants("dscp"):
            await progress(0.1, f"voice stream ({opts.voice_s:g} s, G.711 pacing)")
            res = await call_probe("udp", hostport(resp, opts.twamp_port), {
                "duration_s": opts.voice_s, "codec": opts.codec, "dscp": 46})  # fmt: skip
            out += _voice(opts, res)
        if opts.wants("bandwidth"):
            await progress(0.3, "bandwidth up and down")
            out += await _bandwidth(opts, call_probe, path)
        if opts.wants("capacity"):
            await progress(0.45, "concurrent-call ramp")
            cap_calls, ramp = await _capacity(opts, progress, streams)
            reason = next((s.reason for s in ramp if not s.ok and s.calls == cap_calls + 1), "")
            out.append(checks.capacity_check(cap_calls, opts.calls, opts.ceiling(), reason))
        if opts.wants("mtu"):
            await progress(0.8, "path MTU")
            out += await net_checks.mtu_checks(opts, call_probe, path)
        if opts.wants("sip_alg"):
            await progress(0.83, "SIP ALG check against the responder")
            out += await sip_checks.alg_checks(opts, call_probe)
        if opts.wants("sip") and opts.sip_server:
            await progress(0.85, "SIP server")
            out += await sip_checks.sip_checks(opts, call_probe)
        if opts.wants("trace"):
            await progress(0.9, "trace to the responder")
            out += await net_checks.trace_checks(opts, call_probe)
        if nat_task is not None:
            await progress(0.95, "waiting for the NAT binding test")
            res = await nat_task
            m = res.measurement
            out.append(checks.nat_check(m) if m and res.success else checks.result_failed(
                "nat.binding", "nat", "UDP binding timeout", res))  # fmt: skip
    finally:
        if nat_task is not None and not nat_task.done():
            nat_task.cancel()
        sampler.stop()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5):
                await sampler_task
        if not sampler_task.done():
            sampler_task.cancel()
    if sampler.rtt:
        series.append(Series(title="RTT over the test (ICMP)", x_label="s", y_label="ms",
                             points=sampler.rtt, limit=150.0))  # fmt: skip
    if sampler.jitter:
        series.append(Series(title="Jitter over the test (ICMP, RFC 3550)", x_label="s",
                             y_label="ms", points=sampler.jitter, limit=30.0))  # fmt: skip
    if ramp:
        pts = sorted((float(s.calls), s.worst_loss_pct or 0.0) for s in ramp)
        series.append(Series(title="Capacity ramp: loss by simultaneous calls", x_label="calls",
                             y_label="loss %", points=pts, limit=1.0))  # fmt: skip
    await progress(1.0, "report ready")
    return ReadinessReport(
        verdict=verdict(out), started_at=started_at, duration_s=time.monotonic() - t0,
        responder=resp, sip_server=opts.sip_server, agent_host=socket.gethostname(),
        options=opts.model_dump(mode="json", exclude={"sip_password", "call_info"}),
        checks=out, ramp=ramp, capacity_calls=cap_calls, series=series,
        call_info=opts.call_info,
    )  # fmt: skip


def _voice(opts: ReadinessOptions, res: ProbeResult) -> list[Check]:
    m = res.measurement
    got: list[Check] = []
    if not res.success or not m or not m.get("received"):
        if opts.wants("voice"):
            got.append(checks.result_failed("voice.stream", "voice", "Voice stream", res))
        return got
    if opts.wants("voice"):
        got += checks.voice_checks(m)
    if opts.wants("dscp"):
        got += checks.dscp_checks(m)
    return got


async def _bandwidth(opts: ReadinessOptions, call_probe: ProbeCall, path: PathFacts) -> list[Check]:
    if "bandwidth" not in PROBE_MODULES:
        return [checks.skipped("bandwidth", "bandwidth", "Bandwidth",
                               "the bandwidth probe is not part of this build")]  # fmt: skip
    return await net_checks.bandwidth_checks(opts, call_probe, path)


async def _capacity(
    opts: ReadinessOptions, progress: Progress, call_streams: StreamsCall
) -> tuple[int, list[RampStep]]:
    target = hostport(opts.responder, opts.twamp_port)

    async def streams(n: int, extra: dict[str, Any]) -> list[ProbeResult]:
        return await call_streams("udp", target, {"codec": opts.codec, "dscp": 46, **extra}, n)

    expected_steps = 2 * max(1, opts.ceiling().bit_length())
    done = 0

    async def step_done(step: RampStep) -> None:
        nonlocal done
        done += 1
        verdict = "ok" if step.ok else step.reason
        fraction = 0.45 + 0.33 * min(1.0, done / expected_steps)
        await progress(fraction, f"ramp: {step.calls} simultaneous calls: {verdict}")

    return await capacity.run_ramp(
        streams, ceiling=opts.ceiling(), step_s=opts.ramp_step_s, progress=step_done
    )
