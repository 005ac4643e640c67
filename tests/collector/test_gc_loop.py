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
    unfreezes: list[int] = []
    freezes: list[int] = []  # at each freeze, how many refreshes (unfreezes) came before
    froze = asyncio.Event()
    real_unfreeze, real_freeze = gc.unfreeze, gc.freeze

    def freeze() -> None:
        real_freeze()
        freezes.append(len(unfreezes))
        froze.set()

    async def next_freeze() -> None:
        froze.clear()
        await asyncio.wait_for(froze.wait(), 30)

    monkeypatch.setattr(gc, "unfreeze", lambda: (unfreezes.append(1), real_unfreeze()))
    monkeypatch.setattr(gc, "freeze", freeze)
    dead = _Node()
    dead_ref = weakref.ref(dead)
    del dead
    task = asyncio.create_task(worker.gc_loop(interval=0.05, refresh=0.3))
    try:
        await next_freeze()
        assert gc.get_freeze_count() > 0  # survivors moved out of the collector's view
        assert dead_ref() is None  # garbage present at the collection was freed first
        # A cycle that dies after being frozen is reclaimed at the next refresh.
        frozen = _Node()
        ref = weakref.ref(frozen)
        await next_freeze()
        refreshes = freezes[-1]
        del frozen
        gc.collect()
        assert ref() is not None  # frozen: the ordinary collection does not see it
        while freezes[-1] == refreshes:
            await next_freeze()
        assert ref() is None  # the refresh unfroze and collected it
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
        if len(calls) >= 45:
            done.set()
        return real_collect(generation)

    monkeypatch.setattr(gc, "collect", collect)
    # A full pass every 20 passes, counted (not timed): a slow full pass on a loaded machine
    # does not make the next one full too.
    task = asyncio.create_task(worker.gc_loop(interval=0.01, refresh=0.2))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [i for i, g in enumerate(calls[:45]) if g != 1] == [19, 39], calls
    assert set(calls[:45]) == {1, 2}, calls
