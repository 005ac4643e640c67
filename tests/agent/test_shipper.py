"""The shipper cannot be stalled or stopped by its collector: retry delays are exponential
with jitter; per-item rejects leave the spool counted; a batch the collector refuses is
halved until the failing item is alone, which is held back and given up only when the
collector takes everything else; malformed answers are retried; Retry-After is honoured; a
revoked key keeps the spool. Against a real HTTP server on loopback (tests/agent/hostile.py)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.runtime.client import CollectorClient
from agent.runtime.shipper import Shipper, backoff_delay, is_urgent
from agent.runtime.spool import Spool
from agent.wire.results import ProbeResult, utcnow
from tests.agent.hostile import Hostile


def test_backoff_grows_doubles_and_caps_with_jitter() -> None:
    rng = random.Random(5)
    for attempt, cap in [(0, 1.0), (1, 2.0), (3, 8.0), (8, 256.0), (9, 300.0), (500, 300.0)]:
        delays = [backoff_delay(attempt, 1.0, 300.0, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap / 4  # spread, not a fixed step


def test_two_agents_with_different_seeds_do_not_retry_in_step() -> None:
    a = [backoff_delay(n, 1.0, 300.0, random.Random(1)) for n in range(10)]
    b = [backoff_delay(n, 1.0, 300.0, random.Random(2)) for n in range(10)]
    assert all(abs(x - y) > 1e-6 for x, y in zip(a, b, strict=True))


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    h.url = h.start()  # type: ignore[attr-defined]
    try:
        yield h
    finally:
        h.stop()


def results(n: int) -> list[dict[str, Any]]:
    return [
        ProbeResult(
            probe="icmp", target=f"192.0.2.{i}", started_at=utcnow(), duration_ms=1.0, success=True
        ).to_json_dict()
        for i in range(n)
    ]


def setup(
    tmp_path: Path, h: Hostile, n: int, key: str = "good-key", **kw: Any
) -> tuple[Shipper, Spool, list[str]]:
    spool = Spool(tmp_path / "s.db", max_bytes=10**7, max_age_s=10**9)
    items = results(n)
    spool.put_many(items, now=time.time())
    client = CollectorClient(h.url, key, timeout_s=1.0)  # type: ignore[attr-defined]
    opts: dict[str, Any] = dict(
        batch_size=16, interval_s=0.05, backoff_initial_s=0.01, backoff_max_s=0.05
    )
    shipper = Shipper(spool, client, rng=random.Random(1), **{**opts, **kw})
    return shipper, spool, [str(r["id"]) for r in items]


async def until(what: str, check: Callable[[], Any], task: asyncio.Task[None],
                timeout_s: float = 30.0) -> None:  # fmt: skip
    """Wait for `check()` while the shipper task must stay alive."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert not task.done(), f"the shipper stopped: {task!r}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Shipper], asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(shipper: Shipper) -> asyncio.Task[None]:
        tasks.append(asyncio.create_task(shipper.run()))
        return tasks[-1]

    yield start
    for t in tasks:
        assert not t.done(), "the shipper loop ended"
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_malformed_answers_are_retried_and_never_stop_the_shipper(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    hostile.faults = [
        "lots", "garbage", "no_items", "wrong_status", "list", "deep", "short", "reset",
        "huge", "hang", "stored_then_garbage", "html500", "moved",
    ]  # fmt: skip
    hostile.hang_s = 3.0
    shipper, spool, ids = setup(tmp_path, hostile, 40)
    with pytest.raises(Exception) as first:
        await shipper.ship_once()  # `{"stored": "lots"}` used to raise a KeyError/ValueError
    assert "stored: Input should be a valid integer" in str(first.value)
    task = running(shipper)
    await until("every result stored", lambda: set(ids) <= set(hostile.stored), task)
    await until("the spool empty", lambda: spool.stats(0).depth == 0, task)
    st = shipper.stats
    assert st.by_failure.get("answer", 0) >= 7 and st.by_failure.get("network", 0) >= 3
    assert st.quarantined == 0 and spool.stats(0).rejected == 0  # nothing valid is lost


async def test_an_item_failing_every_batch_with_500_is_isolated_and_quarantined(
    tmp_path: Path, hostile: Hostile, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    shipper, spool, ids = setup(tmp_path, hostile, 40)
    poison = ids[21]
    hostile.fail_batch = {poison: 500}
    task = running(shipper)
    await until("the poison quarantined", lambda: shipper.stats.quarantined == 1, task)
    await until("the others stored", lambda: set(ids) - {poison} <= set(hostile.stored), task)
    assert poison not in hostile.stored
    (gone,) = spool.rejected()
    assert gone.id == poison and gone.kind == "quarantined" and "500" in gone.reason
    assert spool.stats(0).dropped["quarantined"] == 1 and spool.stats(0).depth == 0
    alone = [s for s in hostile.requests_with(poison) if len(s.ids) == 1]
    assert len(alone) == shipper.quarantine_after  # bounded attempts
    assert len(hostile.requests_with(poison)) <= 12
    assert f"result {poison} dropped from the spool" in caplog.text
    assert shipper.limit == shipper.batch_size  # grown back


async def test_an_outage_of_500s_quarantines_nothing(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    hostile.faults = ["html500"] * 25
    shipper, spool, ids = setup(tmp_path, hostile, 40)
    task = running(shipper)
    await until("every result stored", lambda: set(ids) <= set(hostile.stored), task)
    await until("nothing held back", lambda: not shipper.suspects, task)
    assert shipper.stats.quarantined == 0 and spool.stats(0).depth == 0
    assert spool.stats(0).rejected == 0


async def test_a_400_for_the_whole_batch_is_bisected_to_the_one_item(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    shipper, spool, ids = setup(tmp_path, hostile, 40)
    poison = ids[5]
    hostile.fail_batch = {poison: 400}
    task = running(shipper)
    await until("the poison quarantined", lambda: spool.stats(0).dropped["quarantined"], task)
    await until("the others stored", lambda: set(ids) - {poison} <= set(hostile.stored), task)
    (gone,) = spool.rejected()
    assert gone.id == poison and "400 batch refused (400)" in gone.reason
    # halving: 16, 8, then the failing half of each: at most log2(16) + 2 with the poison
    assert len(hostile.requests_with(poison)) <= 6
    # stored at the collector before the answer reaches the agent: wait for its ack
    await until("the spool empty", lambda: spool.stats(0).depth == 0, task)


async def test_per_item_rejects_leave_the_spool_counted_with_the_reason(
    tmp_path: Path, hostile: Hostile, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    shipper, spool, ids = setup(tmp_path, hostile, 10)
    reason = "schema_version 99 is not supported by this collector (known: 1, 2)"
    hostile.reject = {ids[3]: reason}
    task = running(shipper)
    await until("the spool empty", lambda: spool.stats(0).depth == 0, task)
    assert [(r.id, r.kind, r.reason) for r in spool.rejected()] == [(ids[3], "rejected", reason)]
    assert spool.stats(0).dropped["rejected"] == 1 and shipper.stats.rejected == 1
    assert f"collector rejected result {ids[3]}, dropped from the spool: {reason}" in caplog.text
    assert len(hostile.seen) == 1  # one batch, nothing re-sent


async def test_413_splits_the_batch_and_keeps_it_below_the_limit(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    hostile.max_items = 5
    shipper, _, ids = setup(tmp_path, hostile, 40)
    task = running(shipper)
    await until("every result stored", lambda: set(ids) <= set(hostile.stored), task)
    assert shipper.ceiling <= 5 and shipper.stats.quarantined == 0
    assert sum(1 for s in hostile.seen if s.answer == "413") <= 3


@pytest.mark.parametrize("fault", ["busy", "slow_down"])
async def test_retry_after_is_honoured(
    tmp_path: Path, hostile: Hostile, running: Any, fault: str
) -> None:
    hostile.faults = [fault]
    shipper, _, ids = setup(tmp_path, hostile, 3)
    task = running(shipper)
    await until("every result stored", lambda: set(ids) <= set(hostile.stored), task)
    first, second = hostile.seen[0], hostile.seen[1]
    assert second.at - first.at >= 0.95  # Retry-After: 1 (the backoff alone is 10 ms)
    assert shipper.limit == 16 and not shipper.suspects  # not a reason to split


async def test_a_revoked_key_keeps_the_spool_says_what_to_do_and_picks_up_a_new_key(
    tmp_path: Path, hostile: Hostile, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    new_key: list[str] = []
    hostile.keys = {"new-key"}
    hostile.revoked_detail = "agent 42 is revoked"
    shipper, spool, ids = setup(
        tmp_path, hostile, 5, key="old-key", reload_key=lambda: new_key.pop() if new_key else None
    )
    task = running(shipper)
    await until("three refusals", lambda: len(hostile.seen) >= 3, task)
    assert shipper.stats.auth_refused and spool.stats(0).depth == 5
    assert "(401: agent 42 is revoked)" in caplog.text
    assert "qos-scout agent enroll --collector URL --token TOKEN" in caplog.text
    said = caplog.text.count("refuses this agent's key")
    assert said <= 1 + len(hostile.seen) // 12  # said at first, then every 12th refusal
    new_key.append("new-key")  # as `qos-scout agent enroll --force` writes it
    await until("every result stored", lambda: set(ids) <= set(hostile.stored), task)
    assert not shipper.stats.auth_refused and spool.stats(0).depth == 0
    assert shipper.stats.quarantined == 0


async def test_a_redirect_is_an_error_naming_where_it_points(
    tmp_path: Path, hostile: Hostile
) -> None:
    hostile.faults = ["moved"]
    shipper, spool, _ = setup(tmp_path, hostile, 2)
    with pytest.raises(Exception) as exc:
        await shipper.ship_once()
    assert str(exc.value) == (
        "ship results: 301 redirect to https://collector.example/api/v1/results; "
        "set collector.url to the final address"
    )
    assert await shipper.ship_once() == 2 and spool.stats(0).depth == 0


async def test_a_job_id_from_the_collector_is_escaped_into_the_status_path(
    hostile: Hostile,
) -> None:
    from agent.runtime.client import CollectorError
    from agent.runtime.contract import job_status

    client = CollectorClient(hostile.url, "good-key", timeout_s=2)  # type: ignore[attr-defined]
    with pytest.raises(CollectorError, match=r"job 'a/b c\\r\\nX: 1' status: 404"):
        await client.job_status("a/b c\r\nX: 1", job_status("failed", message="malformed"))
    assert hostile.seen[-1].path == "/api/v1/agent/jobs/a%2Fb%20c%0D%0AX%3A%201/status"


async def test_flush_survives_a_hostile_answer(tmp_path: Path, hostile: Hostile) -> None:
    hostile.faults = ["lots"] * 100
    shipper, spool, _ = setup(tmp_path, hostile, 3)
    assert await shipper.flush(0.5) is False
    assert spool.stats(0).depth == 3


logging.getLogger("agent").setLevel(logging.INFO)


async def test_a_loop_that_raises_is_restarted_with_backoff_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from collections import Counter

    from agent.runtime.loop import supervise

    calls: list[float] = []
    forever = asyncio.Event()

    async def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise KeyError("stored")  # what `{"stored": "lots"}`-like bugs raised
        await forever.wait()

    restarts: Counter[str] = Counter()
    task = asyncio.create_task(
        supervise("shipper", flaky, restarts, random.Random(1), initial_s=0.1, max_s=1.0)
    )
    await until("the third start", lambda: len(calls) >= 3, task)
    assert restarts == {"shipper": 2}
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1  # backoff, doubling
    assert caplog.text.count("shipper loop crashed; starting it again") == 2
    assert "KeyError: 'stored'" in caplog.text  # the traceback is logged
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- batching by time as well as count --------------------------------------------------


def _posts(h: Hostile) -> list[Any]:
    return [s for s in h.seen if s.path.endswith("/results")]


def _add(shipper: Shipper, spool: Spool, *res: ProbeResult) -> list[str]:
    """What the agent's sink does: spool each result, then tell the shipper."""
    for r in res:
        spool.put(r.to_json_dict(), time.time())
        shipper.notify(urgent=is_urgent(r))
    return [str(r.id) for r in res]


def _result(i: int, **kw: Any) -> ProbeResult:
    kw.setdefault("success", True)
    return ProbeResult(
        probe="icmp", target=f"192.0.2.{i}", started_at=utcnow(), duration_ms=1.0, **kw
    )


def test_failed_probes_and_job_results_are_urgent() -> None:
    assert not is_urgent(_result(1))
    assert is_urgent(_result(1, success=False))
    assert is_urgent(_result(1, job_id="j-1"))


async def test_results_wait_for_the_time_batch_and_share_one_request(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    shipper, spool, _ = setup(tmp_path, hostile, 0, max_delay_s=2.0, interval_s=0.05)
    task = running(shipper)
    await until("the shipper idle", lambda: shipper.idle, task)
    first = time.monotonic()
    ids = _add(shipper, spool, _result(1))
    await asyncio.sleep(0.3)  # the next result of the schedule comes a little later
    ids += _add(shipper, spool, _result(2), _result(3))
    await until("the results stored", lambda: set(ids) <= set(hostile.stored), task)
    [post] = _posts(hostile)  # one request for the three, not one per wake-up
    assert sorted(post.ids) == sorted(ids)
    assert post.at - first >= 2.0  # the first result waited for its batch


async def test_a_full_batch_ships_without_waiting(
    tmp_path: Path, hostile: Hostile, running: Any
) -> None:
    shipper, spool, _ = setup(tmp_path, hostile, 0, max_delay_s=3600, batch_size=4)
    task = running(shipper)
    await until("the shipper idle", lambda: shipper.idle, task)
    ids = _add(shipper, spool, *(_result(i) for i in range(4)))
    await until("the full batch stored", lambda: set(ids) <= set(hostile.stored), task)
    [post] = _posts(hostile)
    assert sorted(post.ids) == sorted(ids)


@pytest.mark.parametrize("urgent", [{"success": False}, {"job_id": "j-1"}])
async def test_an_urgent_result_ships_at_once_with_what_waits(
    tmp_path: Path, hostile: Hostile, running: Any, urgent: dict[str, Any]
) -> None:
    shipper, spool, _ = setup(tmp_path, hostile, 0, max_delay_s=3600)
    task = running(shipper)
    await until("the shipper idle", lambda: shipper.idle, task)
    ids = _add(shipper, spool, _result(1), _result(2))
    assert shipper.due_in() is not None and shipper.due_in() > 3000  # type: ignore[operator]
    ids += _add(shipper, spool, _result(3, **urgent))
    assert shipper.due_in() == 0.0
    await until("the batch stored", lambda: set(ids) <= set(hostile.stored), task)
    [post] = _posts(hostile)  # the waiting results went with the urgent one
    assert sorted(post.ids) == sorted(ids)


async def test_results_waiting_for_their_batch_survive_a_crash_and_a_stop_ships_them(
    tmp_path: Path, hostile: Hostile
) -> None:
    shipper, spool, _ = setup(tmp_path, hostile, 0, max_delay_s=3600)
    task = asyncio.create_task(shipper.run())
    await until("the shipper idle", lambda: shipper.idle, task)
    ids = _add(shipper, spool, _result(1), _result(2))
    await until("the results waiting", lambda: shipper.idle and shipper.due_in() is not None, task)
    task.cancel()  # the agent dies while they wait
    await asyncio.gather(task, return_exceptions=True)
    assert not hostile.stored and spool.stats(0).depth == 2  # still in the spool
    again = Shipper(spool, shipper.client, max_delay_s=3600, rng=random.Random(2))
    task = asyncio.create_task(again.run())  # the restarted agent ships them at start
    try:
        await until("shipped after the restart", lambda: set(ids) <= set(hostile.stored), task)
        later = _add(again, spool, _result(3))
        assert await again.flush(5.0)  # a stop does not wait for the time batch
        assert set(later) <= set(hostile.stored) and spool.stats(0).depth == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
