"""`gc_loop`: survivors are frozen out of the cyclic collector's walk, unfrozen periodically
and on stop, and garbage cycles are still collected."""

from __future__ import annotations

import asyncio
import gc
import weakref

from collector import worker


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


async def test_gc_loop_freezes_survivors_and_refreshes(monkeypatch):
    unfreezes = []
    real_unfreeze = gc.unfreeze
    monkeypatch.setattr(gc, "unfreeze", lambda: (unfreezes.append(1), real_unfreeze()))
    dead = _Node()
    dead_ref = weakref.ref(dead)
    del dead
    task = asyncio.create_task(worker.gc_loop(interval=0.05, refresh=0.3))
    try:
        await asyncio.sleep(0.15)
        assert gc.get_freeze_count() > 0  # survivors moved out of the collector's view
        assert dead_ref() is None  # garbage present at the collection was freed first
        # A cycle that dies after being frozen is reclaimed at the next refresh.
        frozen = _Node()
        ref = weakref.ref(frozen)
        await asyncio.sleep(0.1)
        del frozen
        gc.collect()
        assert ref() is not None  # frozen: the ordinary collection does not see it
        await asyncio.sleep(0.5)
        assert unfreezes and ref() is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() == 0  # stopped: nothing stays frozen


async def test_gc_loop_walks_the_old_generation_only_at_the_refresh(monkeypatch):
    """A full collection walks every live object not frozen: at 10,000 agents a minute of
    held polls is about a million, a 0.4-0.9 s stall of the event loop. Between refreshes
    the loop collects the young generations only."""
    calls: list[int] = []
    done = asyncio.Event()
    real_collect = gc.collect

    def collect(generation: int = 2) -> int:
        calls.append(generation)
        if 2 in calls[:-1]:  # a pass after the first refresh
            done.set()
        return real_collect(generation)

    monkeypatch.setattr(gc, "collect", collect)
    task = asyncio.create_task(worker.gc_loop(interval=0.01, refresh=0.2))
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    first_full = calls.index(2)
    assert first_full > 0 and set(calls[:first_full]) == {1}, calls
    assert calls[first_full + 1] == 1, calls
