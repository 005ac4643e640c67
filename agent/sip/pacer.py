"""One RTP pacing scheduler for every stream in the process: a thread with a deadline heap.

A thread sleeping with nanosleep wakes within tens of microseconds, where the asyncio loop
rounds its timeouts up to whole milliseconds; one thread for all streams keeps 100 calls on
time without 100 timers. Streams are callables returning their next deadline (monotonic
seconds) or None when done. Sending from this thread on a non-blocking UDP socket is safe.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

SendFn = Callable[[float], float | None]
log = logging.getLogger(__name__)

# The pacer thread asks for this SCHED_FIFO priority when the system allows it (root,
# CAP_SYS_NICE or RLIMIT_RTPRIO); it sleeps almost all the time, so a busy CPU shared with
# other programs no longer delays its wake-ups. QOS_SCOUT_PACER_RT=0 turns this off.
RT_PRIORITY = 10


def _raise_priority() -> bool:
    if os.environ.get("QOS_SCOUT_PACER_RT", "1") == "0" or not hasattr(os, "SCHED_FIFO"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))  # this thread
    except (PermissionError, OSError):
        return False
    return True


class Pacer:
    """Call each stream's `send(deadline)` at its deadline; it returns the next one."""

    _shared: Pacer | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, SendFn]] = []
        self._cv = threading.Condition()
        self._ids = itertools.count()
        self._cancelled: set[int] = set()
        self._thread: threading.Thread | None = None
        self.max_late_s = 0.0
        self.realtime = False

    @classmethod
    def shared(cls) -> Pacer:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def add(self, send: SendFn, first_deadline: float) -> int:
        """Schedule a stream; returns a handle for `cancel`."""
        handle = next(self._ids)
        with self._cv:
            heapq.heappush(self._heap, (first_deadline, handle, send))
            if self._thread is None or not self._thread.is_alive():
                # Let the pacer get the GIL back quickly from a busy event loop.
                sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
                self._thread = threading.Thread(target=self._run, name="rtp-pacer", daemon=True)
                self._thread.start()
            self._cv.notify()
        return handle

    def cancel(self, handle: int) -> None:
        with self._cv:
            self._cancelled.add(handle)
            self._cv.notify()

    def _run(self) -> None:
        self.realtime = _raise_priority()
        log.debug("RTP pacer started (real-time priority: %s)", self.realtime)
        while True:
            with self._cv:
                while True:
                    while self._heap and self._heap[0][1] in self._cancelled:
                        self._cancelled.discard(heapq.heappop(self._heap)[1])
                    if not self._heap:
                        if not self._cv.wait(timeout=5.0) and not self._heap:
                            self._thread = None
                            return
                        continue
                    deadline, handle, send = self._heap[0]
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    if wait > 0.002:
                        self._cv.wait(timeout=wait - 0.001)  # wakes early on add/cancel
                        continue
                    break
            # Outside the lock: precise sleep for the last stretch, then send.
            wait = deadline - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                with self._cv:
                    if not self._heap or self._heap[0][1] != handle:
                        continue  # something earlier was added meanwhile
                    heapq.heappop(self._heap)
                    if handle in self._cancelled:
                        self._cancelled.discard(handle)
                        continue
            self.max_late_s = max(self.max_late_s, time.monotonic() - deadline)
            try:
                nxt = send(deadline)
            except Exception:  # a broken stream must not stop the others
                nxt = None
            if nxt is not None:
                with self._cv:
                    if handle in self._cancelled:
                        self._cancelled.discard(handle)
                    else:
                        heapq.heappush(self._heap, (nxt, handle, send))
