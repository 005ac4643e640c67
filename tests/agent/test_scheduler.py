"""Scheduler: random first offsets, phase kept, bounded concurrency, lock classes, loss trigger."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from pydantic import BaseModel, ConfigDict

from agent.probes import ProbeContext, Target, register
from agent.runtime.config import ModuleConfig
from agent.runtime.scheduler import PROBE_CLASS, ConflictQueue, Plan, Scheduler, loss_pct
from agent.wire.lite import LossTrigger
from agent.wire.results import ProbeResult, utcnow


def test_first_runs_spread_over_the_interval_and_phase_is_kept() -> None:
    firsts = []
    for seed in range(200):
        plan = Plan({"m": 60.0}, now=1000.0, rng=random.Random(seed))
        firsts.append(plan.next_due["m"])
    assert min(firsts) >= 1000.0 and max(firsts) < 1060.0
    assert max(firsts) - min(firsts) > 50.0  # a fleet does not start in step
    plan = Plan({"m": 60.0}, now=0.0, rng=random.Random(1))
    t0 = plan.next_due["m"]
    assert plan.due(t0 - 0.001) == []
    assert plan.due(t0 + 0.5) == ["m"]
    assert plan.next_due["m"] == pytest.approx(t0 + 60.0)
    # Suspended for 10 intervals: one run, then back on the original phase.
    assert plan.due(t0 + 60.0 * 10 + 1.0) == ["m"]
    assert plan.next_due["m"] == pytest.approx(t0 + 60.0 * 11)


def test_first_run_cap() -> None:
    plan = Plan({"a": 28800.0, "b": 5.0}, now=0.0, rng=random.Random(3), first_within_s=10.0)
    assert plan.next_due["a"] <= 10.0 and plan.next_due["b"] <= 5.0
    assert plan.next_wakeup() == min(plan.next_due.values())


def test_plan_update_keeps_unchanged_phases_and_reschedules_the_rest() -> None:
    rng = random.Random(5)
    plan = Plan({"keep": 60.0, "change": 60.0, "drop": 60.0}, now=0.0, rng=rng)
    kept = plan.next_due["keep"]
    plan.update({"keep": 60.0, "change": 10.0, "new": 30.0}, now=100.0, rng=rng)
    assert plan.next_due["keep"] == kept  # its phase is kept
    assert "drop" not in plan.next_due and "drop" not in plan.intervals
    assert 100.0 <= plan.next_due["change"] < 110.0  # within its new interval
    assert 100.0 <= plan.next_due["new"] < 130.0
    due = plan.due(200.0)
    assert "drop" not in due and set(due) == {"keep", "change", "new"}
    assert plan.next_due["change"] - 200.0 <= 10.0
    with pytest.raises(ValueError, match="module bad: interval must be positive"):
        plan.update({"bad": 0.0}, now=0.0, rng=rng)


def test_conflict_queue_bandwidth_excludes_voice_first_come_first_served() -> None:
    q = ConflictQueue()
    v1 = q.enqueue("voice")
    assert q.can_start(v1)
    q.start(v1)
    v2 = q.enqueue("voice")
    assert q.can_start(v2)  # voice streams may overlap each other
    bw = q.enqueue("bandwidth")
    assert not q.can_start(bw)  # a voice stream is running
    v3 = q.enqueue("voice")
    assert not q.can_start(v3)  # an earlier bandwidth test waits: no overtaking
    q.start(v2)
    q.finish("voice")
    q.finish("voice")
    assert q.can_start(bw)
    q.start(bw)
    assert not q.can_start(v3)
    q.finish("bandwidth")
    assert q.can_start(v3)


class SleepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = 0.05
    loss: float | None = None


class SleepMeasurement(BaseModel):
    start: float
    end: float
    loss_pct: float | None = None


@register("t_sleep_bw", SleepOptions, timeout_s=5.0, measurement=SleepMeasurement)
@register("t_sleep_voice", SleepOptions, timeout_s=5.0, measurement=SleepMeasurement)
@register("t_sleep", SleepOptions, timeout_s=5.0, measurement=SleepMeasurement)
async def sleeper(target: Target, opts: SleepOptions, ctx: ProbeContext) -> SleepMeasurement:
    start = time.monotonic()
    await asyncio.sleep(opts.sleep_s)
    return SleepMeasurement(start=start, end=time.monotonic(), loss_pct=opts.loss)


@pytest.fixture
def lock_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROBE_CLASS, "t_sleep_bw", "bandwidth")
    monkeypatch.setitem(PROBE_CLASS, "t_sleep_voice", "voice")


def spans(results: list[ProbeResult], probe: str) -> list[tuple[float, float]]:
    return [
        (r.measurement["start"], r.measurement["end"])
        for r in results
        if r.probe == probe and r.measurement
    ]


async def test_bandwidth_never_overlaps_voice_and_concurrency_is_bounded(
    lock_classes: None,
) -> None:
    out: list[ProbeResult] = []
    mods = {
        "voice": ModuleConfig(
            probe="t_sleep_voice", targets=["a", "b"], interval_s=1, options={"sleep_s": 0.3}
        ),
        "bw": ModuleConfig(
            probe="t_sleep_bw", targets=["c"], interval_s=1, options={"sleep_s": 0.3}
        ),
        "misc": ModuleConfig(
            probe="t_sleep", targets=["d", "e", "f", "g"], interval_s=1, options={"sleep_s": 0.3}
        ),
    }
    s = Scheduler(mods, out.append, concurrency=3, rng=random.Random(7), first_within_s=0.2)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(4.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    voice, bw = spans(out, "t_sleep_voice"), spans(out, "t_sleep_bw")
    assert len(voice) >= 2 and len(bw) >= 2
    for b0, b1 in bw:
        for v0, v1 in voice:
            assert b1 <= v0 or v1 <= b0, "a bandwidth test overlapped a voice stream"
    every = sorted(spans(out, "t_sleep") + voice + bw)
    for t, _ in every:
        assert sum(1 for a, b in every if a <= t < b) <= 3
    assert all(r.success and r.module in mods for r in out)


async def test_loss_triggers_the_on_loss_module_once_per_cooldown() -> None:
    out: list[ProbeResult] = []
    mods = {
        "voice": ModuleConfig(
            probe="t_sleep",
            targets=["10.0.0.9:862"],
            interval_s=1,
            options={"sleep_s": 0.01, "loss": 5.0},
        ),
        "trace": ModuleConfig(
            probe="t_sleep",
            targets=["10.0.0.9"],
            on_loss=LossTrigger(loss_pct_over=1.0, cooldown_s=60),
        ),
    }
    s = Scheduler(mods, out.append, rng=random.Random(1), first_within_s=0.01)
    task = asyncio.create_task(s.run())
    await asyncio.sleep(2.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sum(1 for r in out if r.module == "voice") >= 2
    traced = [r for r in out if r.module == "trace"]
    assert len(traced) == 1 and traced[0].target == "10.0.0.9"


async def test_gateway_placeholder_without_gateway_fails_with_a_reason() -> None:
    out: list[ProbeResult] = []
    s = Scheduler({}, out.append, gateway=lambda: None)
    res = await s.run_targets("t_sleep", ["$gateway"], {})
    assert out == res and not res[0].success
    assert res[0].error is not None and res[0].error.message == "this host has no default gateway"
    s2 = Scheduler({}, out.append, gateway=lambda: "127.0.0.1")
    assert (await s2.run_targets("t_sleep", ["$gateway"], {}))[0].target == "127.0.0.1"


def test_loss_pct_takes_the_worst_direction() -> None:
    def res(m: dict[str, object]) -> ProbeResult:
        return ProbeResult(
            probe="udp", target="x", started_at=utcnow(), duration_ms=1, success=True, measurement=m
        )

    assert loss_pct(res({"out": {"loss_pct": 0.5}, "back": {"loss_pct": 3.0}})) == 3.0
    assert loss_pct(res({"loss_pct": 2.0, "rtt_ms": {"avg": 9.0}})) == 2.0
    assert loss_pct(res({"rtt_ms": {"avg": 9.0}})) is None


async def test_a_capacity_step_is_admitted_as_one_and_its_streams_run_at_once(
    lock_classes: None,
) -> None:
    out: list[ProbeResult] = []
    s = Scheduler({}, out.append, concurrency=1, rng=random.Random(5), gateway=lambda: None)
    opts = {"sleep_s": 0.5}
    step = asyncio.create_task(
        s.run_targets("t_sleep_voice", ["a"] * 5, opts, together=True, spread_s=0.02)
    )
    bw = asyncio.create_task(s.run_targets("t_sleep_bw", ["b"], {"sleep_s": 0.05}))
    streams, [bandwidth] = await step, await bw
    voice = spans(streams, "t_sleep_voice")
    assert len(voice) == 5 and all(r.success for r in streams)
    # All five in flight together although the concurrency bound is 1 ...
    assert max(a for a, _ in voice) < min(b for _, b in voice)
    # ... and the bandwidth test (queued behind the step) never overlapped any of them.
    [(b0, _)] = spans([bandwidth], "t_sleep_bw")
    assert b0 >= max(b for _, b in voice)
    assert {id(r) for r in out} == {id(r) for r in [*streams, bandwidth]}  # all spooled
    targets = ["$gateway", "a"]
    mixed = await s.run_targets("t_sleep_voice", targets, {"sleep_s": 0.01}, together=True)
    assert [r.success for r in mixed] == [False, True] and mixed[0].target == "$gateway"
    tagged = await s.run_targets("t_sleep", ["a"], {"sleep_s": 0.0}, tags={"load_test": "x"})
    assert tagged[0].tags == {"load_test": "x"} and out[-1].tags == {"load_test": "x"}
