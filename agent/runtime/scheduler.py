"""The agent's scheduler: per-module intervals with random offsets, bounded concurrency, and
lock classes so that a bandwidth test never overlaps a voice stream on the same agent.

`Plan` (when is each module due) and `ConflictQueue` (who may start now) are pure and take
time as an argument; `Scheduler` is the asyncio loop around them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import NetworkUnreachableError
from agent.probes import ProbeContext, Target, get_probe, run_probe
from agent.runtime.config import GATEWAY, ModuleConfig
from agent.wire.lite import ProbeErrorInfo, ProbeResult
from agent.wire.plain import utcnow

log = logging.getLogger(__name__)

# Probe kind -> lock class; classes that must not run at the same time on one agent.
PROBE_CLASS: dict[str, str] = {"bandwidth": "bandwidth", "udp": "voice", "sip_call": "voice"}
CONFLICTS: dict[str, frozenset[str]] = {
    "bandwidth": frozenset({"bandwidth", "voice"}),
    "voice": frozenset({"bandwidth"}),
}
_LOSS_KEY = re.compile(r"^loss(_[a-z]+)?_pct$")


class Plan:
    """When each module is next due. The first run of each module is at a random offset
    within its interval (capped by `first_within_s`) so that a fleet does not synchronise;
    later runs keep the module's phase, and missed slots are skipped, not caught up."""

    def __init__(
        self,
        intervals: dict[str, float],
        now: float,
        rng: random.Random,
        *,
        first_within_s: float | None = None,
    ) -> None:
        self.intervals = dict(intervals)
        self.next_due: dict[str, float] = {}
        for name, every in self.intervals.items():
            if every <= 0:
                raise ValueError(f"module {name}: interval must be positive")
            span = every if first_within_s is None else min(every, first_within_s)
            self.next_due[name] = now + rng.uniform(0.0, span)

    def update(
        self,
        intervals: dict[str, float],
        now: float,
        rng: random.Random,
        *,
        first_within_s: float | None = None,
    ) -> None:
        """Take a new set of modules: a removed module is dropped, a new one or one whose
        interval changed is due at a random offset within its (new) interval, as at the
        start; an unchanged one keeps its phase."""
        for name, every in intervals.items():
            if every <= 0:
                raise ValueError(f"module {name}: interval must be positive")
        old = self.intervals
        self.intervals = dict(intervals)
        for name in list(self.next_due):
            if name not in intervals:
                del self.next_due[name]
        for name, every in intervals.items():
            if old.get(name) != every or name not in self.next_due:
                span = every if first_within_s is None else min(every, first_within_s)
                self.next_due[name] = now + rng.uniform(0.0, span)

    def due(self, now: float) -> list[str]:
        """Modules due at `now` (in due order); each is moved to its next slot after `now`."""
        ready = sorted((t, n) for n, t in self.next_due.items() if t <= now)
        for t, name in ready:
            every = self.intervals[name]
            self.next_due[name] = t + (math.floor((now - t) / every) + 1) * every
        return [n for _, n in ready]

    def next_wakeup(self) -> float | None:
        return min(self.next_due.values(), default=None)


@dataclass
class ConflictQueue:
    """Admission by lock class, first come first served among conflicting classes: a
    waiter starts when nothing conflicting runs and no earlier conflicting waiter waits."""

    conflicts: dict[str, frozenset[str]] = field(default_factory=lambda: dict(CONFLICTS))
    running: Counter[str] = field(default_factory=Counter)
    waiting: list[tuple[int, str]] = field(default_factory=list)
    _ticket: int = 0

    def enqueue(self, cls: str) -> int:
        self._ticket += 1
        self.waiting.append((self._ticket, cls))
        return self._ticket

    def can_start(self, ticket: int) -> bool:
        cls = next(c for t, c in self.waiting if t == ticket)
        blockers = self.conflicts.get(cls, frozenset())
        if any(self.running[b] for b in blockers):
            return False
        return not any(t < ticket and c in blockers for t, c in self.waiting)

    def start(self, ticket: int) -> None:
        cls = next(c for t, c in self.waiting if t == ticket)
        self.waiting = [(t, c) for t, c in self.waiting if t != ticket]
        self.running[cls] += 1

    def cancel(self, ticket: int) -> None:
        self.waiting = [(t, c) for t, c in self.waiting if t != ticket]

    def finish(self, cls: str) -> None:
        self.running[cls] -= 1


class Gate:
    """asyncio wrapper of ConflictQueue: `async with gate.hold(probe_kind): ...`."""

    def __init__(self) -> None:
        self.queue = ConflictQueue()
        self._cond = asyncio.Condition()

    def hold(self, probe: str) -> _Hold:
        return _Hold(self, PROBE_CLASS.get(probe))


class _Hold:
    def __init__(self, gate: Gate, cls: str | None) -> None:
        self.gate, self.cls = gate, cls

    async def __aenter__(self) -> None:
        if self.cls is None:
            return
        q = self.gate.queue
        async with self.gate._cond:
            ticket = q.enqueue(self.cls)
            try:
                await self.gate._cond.wait_for(lambda: q.can_start(ticket))
            except BaseException:
                q.cancel(ticket)
                self.gate._cond.notify_all()
                raise
            q.start(ticket)

    async def __aexit__(self, *_: object) -> None:
        if self.cls is None:
            return
        async with self.gate._cond:
            self.gate.queue.finish(self.cls)
            self.gate._cond.notify_all()


def loss_pct(result: ProbeResult) -> float | None:
    """The worst `loss*_pct` figure of a result's measurement, at the top level or one level
    down (`out.loss_pct`, `back.loss_pct` of a voice stream), if any."""
    m = result.measurement or {}
    values: list[float] = []
    for part in [m, *(v for v in m.values() if isinstance(v, dict))]:
        values += [
            float(v)
            for k, v in part.items()
            if _LOSS_KEY.match(k) and isinstance(v, int | float) and not isinstance(v, bool)
        ]
    return max(values, default=None)


Sink = Callable[[ProbeResult], None]


class Scheduler:
    """Runs the configured modules on time; every result goes to `sink` (the spool)."""

    def __init__(
        self,
        modules: dict[str, ModuleConfig],
        sink: Sink,
        *,
        concurrency: int = 4,
        rng: random.Random | None = None,
        gateway: Callable[[], str | None] = lambda: None,
        first_within_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.modules = modules
        self.first_within_s = first_within_s
        self._changed = asyncio.Event()
        self.sink = sink
        self.gateway = gateway
        self.clock = clock
        self.rng = rng or random.Random()
        self.sem = asyncio.Semaphore(concurrency)
        self.gate = Gate()
        periodic = {n: m.interval_s for n, m in modules.items() if m.interval_s is not None}
        self.plan = Plan(periodic, clock(), self.rng, first_within_s=first_within_s)
        self.running: dict[str, asyncio.Task[None]] = {}
        self.skipped: Counter[str] = Counter()
        self._cooldown: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Loop until cancelled; cancelling also cancels the module runs in flight."""
        try:
            while True:
                now = self.clock()
                for name in self.plan.due(now):
                    self._launch(name, self.modules[name].targets)
                wake = self.plan.next_wakeup()
                delay = 60.0 if wake is None else max(0.0, wake - self.clock())
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            await self.cancel_all()

    def apply(self, modules: dict[str, ModuleConfig]) -> None:
        """Run `modules` from now on, without a restart (`Plan.update`): a run in flight of
        a removed or changed module finishes; the loop wakes to take the new plan."""
        periodic = {n: m.interval_s for n, m in modules.items() if m.interval_s is not None}
        self.modules = modules
        self.plan.update(periodic, self.clock(), self.rng, first_within_s=self.first_within_s)
        self._changed.set()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _launch(self, name: str, targets: list[str]) -> None:
        if name in self.running:
            self.skipped[name] += 1
            log.warning("module %s is still running; skipping this slot", name)
            return
        task = asyncio.create_task(self.run_module(name, targets), name=f"module:{name}")
        self.running[name] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self.running.get(name) is t:
                del self.running[name]
            if not t.cancelled() and t.exception() is not None:
                log.error("module %s crashed: %r", name, t.exception())

        task.add_done_callback(done)

    async def run_module(self, name: str, targets: list[str]) -> None:
        mod = self.modules.get(name)
        if mod is None:  # removed by apply() between its slot and now
            return
        results = await self.run_targets(
            mod.probe, targets, mod.options, module=name, timeout_s=mod.timeout_s
        )
        for r in results:
            self._check_loss(name, r)

    async def run_targets(
        self,
        probe: str,
        targets: Iterable[str],
        options: dict[str, Any],
        *,
        module: str | None = None,
        job_id: str | None = None,
        timeout_s: float | None = None,
        together: bool = False,
        spread_s: float = 0.0,
        tags: dict[str, str] | None = None,
    ) -> list[ProbeResult]:
        """Run one probe against targets under the semaphore and the lock classes; each
        result is handed to the sink as soon as it exists. Bad options raise ConfigError.

        `together=True`: the runs are one measurement (a capacity step's simultaneous
        calls), admitted as one (one slot of the concurrency bound, one hold of the lock
        class) and all started at once, each after a random delay of up to `spread_s` so
        that they do not send in lock-step. `tags` are added to every result."""
        spec = get_probe(probe)
        opts = spec.parse_options(options)
        ctx_timeout = timeout_s or spec.timeout_for(opts)

        async def measure(text: str, delay: float = 0.0) -> ProbeResult:
            if delay > 0:
                await asyncio.sleep(delay)
            ctx = ProbeContext(timeout_s=ctx_timeout)
            res = await run_probe(
                probe, Target.parse(text), opts, ctx=ctx, module=module, job_id=job_id
            )
            if tags:
                res.tags.update(tags)
            self.sink(res)
            return res

        def no_gateway(text: str) -> ProbeResult:
            err = NetworkUnreachableError("this host has no default gateway")
            res = _failed(probe, text, module, job_id, err)
            self.sink(res)
            return res

        # "$gateway" becomes the default gateway's address; it stays when there is none.
        texts = [(self.gateway() or GATEWAY) if t == GATEWAY else t for t in targets]
        if together:
            out: dict[int, ProbeResult] = {
                i: no_gateway(t) for i, t in enumerate(texts) if t == GATEWAY
            }
            runs = {i: t for i, t in enumerate(texts) if i not in out}
            async with self.sem, self.gate.hold(probe):
                got = await asyncio.gather(
                    *(measure(t, self.rng.uniform(0.0, spread_s)) for t in runs.values())
                )
            out.update(zip(runs, got, strict=True))
            return [out[i] for i in range(len(texts))]

        async def one(text: str) -> ProbeResult:
            if text == GATEWAY:
                return no_gateway(text)
            async with self.sem, self.gate.hold(probe):
                return await measure(text)

        return list(await asyncio.gather(*(one(t) for t in texts)))

    def _check_loss(self, source: str, result: ProbeResult) -> None:
        loss = loss_pct(result)
        if loss is None:
            return
        host = Target.parse(result.target).host
        now = self.clock()
        for name, mod in self.modules.items():
            trig = mod.on_loss
            if trig is None or name == source or loss <= trig.loss_pct_over:
                continue
            watched = [t for t in mod.targets if t != GATEWAY and Target.parse(t).host == host]
            if not watched:
                continue
            key = (name, host)
            if now < self._cooldown.get(key, -math.inf):
                continue
            self._cooldown[key] = now + trig.cooldown_s
            log.info("%s saw %.1f %% loss to %s: running %s", source, loss, host, name)
            self._launch(name, watched)


def _failed(
    probe: str, target: str, module: str | None, job_id: str | None, err: NetworkUnreachableError
) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        target=target,
        module=module,
        started_at=utcnow(),
        duration_ms=0.0,
        success=False,
        error=ProbeErrorInfo(
            error_class=type(err).__name__, category=err.category, message=err.message
        ),
        job_id=job_id,
    )
