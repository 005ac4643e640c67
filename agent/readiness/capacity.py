"""Concurrent-call capacity: ramp simultaneous G.711 streams until quality fails.

The search is exponential then binary: 1, 2, 4, 8 ... calls until a step fails (or the
ceiling passes), then bisect between the last good and the first bad count. A step runs N
`udp` probe streams at once (G.711 pacing, EF, each with its own socket, start times
spread over one packet interval so they do not arrive in lock-step; the suite runs them
through its `call_streams`, on the agent through the scheduler) and fails when, in
either direction, the loss over all streams exceeds the loss limit, any stream's jitter
exceeds the jitter limit, the median stream MOS falls below the MOS warn limit, or the RTT
p95 rises more than QUEUE_LIMIT_MS above the one-call step's median RTT: a queue is
building, so the offered load exceeds the link (on a deep buffer that shows long before
loss does).
`next_calls` and `grade_step` are pure; `run_ramp` does the I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from agent.readiness.checks import comparable_mos, direction
from agent.readiness.thresholds import get
from agent.wire.lite import ProbeResult
from agent.wire.readiness import RampStep

QUEUE_LIMIT_MS = 50.0
START_SPREAD_S = 0.02  # a step's streams start within one G.711 packet interval
# Run N `udp` streams at once with these extra options (one socket each, start times spread
# over START_SPREAD_S); the suite's call_streams, bound to the responder and the codec.
StreamsRunner = Callable[[int, dict[str, Any]], Awaitable[list[ProbeResult]]]


def next_calls(steps: dict[int, bool], ceiling: int) -> int | None:
    """The next number of calls to try, or None when the capacity is known."""
    if not steps:
        return 1
    good = [n for n, ok in steps.items() if ok]
    bad = [n for n, ok in steps.items() if not ok]
    lo = max(good, default=0)
    hi = min(bad, default=None)
    if hi is None:
        return None if lo >= ceiling else min(ceiling, max(1, lo * 2))
    if hi - lo <= 1:
        return None
    return (lo + hi) // 2


def capacity_of(steps: dict[int, bool]) -> int:
    """Largest good count below the first bad one (0 if even one call fails)."""
    bad = min((n for n, ok in steps.items() if not ok), default=None)
    return max((n for n, ok in steps.items() if ok and (bad is None or n < bad)), default=0)


def grade_step(
    calls: int, measurements: list[dict[str, Any] | None], errors: list[str],
    baseline_rtt_ms: float | None = None,
) -> RampStep:  # fmt: skip
    """Aggregate N streams' measurements into one step verdict."""
    loss_lim, jit_lim, mos_lim = get("loss_pct").fail, get("jitter_ms").fail, get("mos").warn
    assert loss_lim is not None and jit_lim is not None and mos_lim is not None
    ms = [m for m in measurements if m]
    reasons: list[str] = []
    if errors:
        reasons.append(f"{len(errors)} of {calls} streams failed ({errors[0]})")
    worst_loss = worst_jitter = worst_mos = None
    for key, label in (("out", "upstream"), ("back", "downstream")):
        ds = [direction(m, key) for m in ms]
        packets = sum(d.packets_sent or 0 for d in ds)
        lost = sum(d.lost or 0 for d in ds)
        if packets == 0:  # direction unknown (stateless reflector): use round-trip loss
            packets = sum(m.get("sent") or 0 for m in ms)
            lost = sum(m.get("lost") or 0 for m in ms)
        loss = 100.0 * lost / packets if packets else None
        jitters = [d.jitter_ms for d in ds if d.jitter_ms is not None]
        moses = [x for x in map(comparable_mos, ds) if x is not None]
        jitter = max(jitters) if jitters else None
        mos = statistics.median(moses) if moses else None
        if loss is not None and loss > loss_lim:
            reasons.append(f"{label} loss {loss:.2f} % > {loss_lim:g} %")
        if jitter is not None and jitter > jit_lim:
            reasons.append(f"{label} jitter {jitter:.1f} ms > {jit_lim:g} ms")
        if mos is not None and mos < mos_lim:
            reasons.append(f"{label} MOS {mos:.2f} < {mos_lim:g}")
        worst_loss = _worst(worst_loss, loss, max)
        worst_jitter = _worst(worst_jitter, jitter, max)
        worst_mos = _worst(worst_mos, mos, min)
    p95s = [(m.get("rtt_ms") or {}).get("p95") for m in ms]
    p95 = max((x for x in p95s if x is not None), default=None)
    if p95 is not None and baseline_rtt_ms is not None and p95 - baseline_rtt_ms > QUEUE_LIMIT_MS:
        reasons.append(
            f"RTT p95 {p95:.0f} ms is {p95 - baseline_rtt_ms:.0f} ms above one call's "
            f"(> {QUEUE_LIMIT_MS:g} ms: a queue is building)"
        )
    medians = [(m.get("rtt_ms") or {}).get("median") for m in ms]
    med = [x for x in medians if x is not None]
    if not ms:
        reasons.append("no stream measured anything")
    return RampStep(
        calls=calls, ok=not reasons, worst_loss_pct=worst_loss, worst_jitter_ms=worst_jitter,
        worst_mos=worst_mos, rtt_p95_ms=p95, reason="; ".join(reasons),
        rtt_median_ms=statistics.median(med) if med else None,
    )  # fmt: skip


def _worst(a: float | None, b: float | None, pick: Callable[[float, float], float]) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


async def run_step(
    calls: int, run_streams: StreamsRunner, step_s: float, baseline_rtt_ms: float | None = None
) -> RampStep:
    results = await run_streams(calls, {"duration_s": step_s, "wait_s": 1.0})
    errors = [r.error.message for r in results if r.error is not None]
    return grade_step(calls, [r.measurement for r in results], errors, baseline_rtt_ms)


async def run_ramp(
    run_streams: StreamsRunner,
    *,
    ceiling: int,
    step_s: float,
    progress: Callable[[RampStep], Awaitable[None]] | None = None,
) -> tuple[int, list[RampStep]]:
    """Search the capacity; returns (calls carried, steps in the order run)."""
    if ceiling < 1:
        raise ValueError("the call ceiling must be at least 1")
    steps: dict[int, bool] = {}
    ran: list[RampStep] = []
    baseline: float | None = None
    while (n := next_calls(steps, ceiling)) is not None:
        step = await run_step(n, run_streams, step_s, baseline)
        if n == 1 and step.ok:
            baseline = step.rtt_median_ms
        steps[n] = step.ok
        ran.append(step)
        if progress is not None:
            await progress(step)
    return capacity_of(steps), ran
