"""RTP sender process: paces every RTP stream of the agent in a process of its own.

A pacing thread inside the agent shares the interpreter lock with the event loop: when the
loop's thread holds the lock and the CPU is busy with other programs, packets wait. This
process has its own interpreter, does nothing but send (a deadline heap, `nanosleep`,
`agent.sip.rtp`), and asks for a real-time priority when allowed. The agent passes it
each stream's UDP socket (SCM_RIGHTS) with the schedule; the process sends packet i at
`t0 + i * ptime` (CLOCK_MONOTONIC is shared by all processes) and returns the send times
when the stream ends or is cancelled. It is started on first use and stopped when idle.

Frames on the UNIX stream socket: 4-byte length + JSON header + 4-byte length + blob.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
IDLE_EXIT_S = 60.0


def _frame(header: dict[str, Any], blob: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("!I", len(h)) + h + struct.pack("!I", len(blob)) + blob


class _FrameReader:
    """Reassemble frames (and the file descriptors that came with them) from a stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def read(self) -> list[tuple[dict[str, Any], bytes, list[int]]] | None:
        """Frames now complete; None at end of stream."""
        data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 16)
        if not data:
            return None
        self.buf += data
        self.fds += fds
        out = []
        while len(self.buf) >= 4:
            hl = struct.unpack("!I", self.buf[:4])[0]
            if len(self.buf) < 8 + hl:
                break
            bl = struct.unpack("!I", self.buf[4 + hl : 8 + hl])[0]
            if len(self.buf) < 8 + hl + bl:
                break
            header = json.loads(self.buf[4 : 4 + hl])
            blob = self.buf[8 + hl : 8 + hl + bl]
            self.buf = self.buf[8 + hl + bl :]
            nfds = int(header.get("nfds", 0))
            out.append((header, blob, self.fds[:nfds]))
            self.fds = self.fds[nfds:]
        return out


# --------------------------------------------------------------------------- agent side


@dataclass
class StreamPlan:
    """One stream's schedule: packet i leaves at t0 + i * ptime, until `count` packets."""

    dest: tuple[str, int]
    payload_type: int
    ssrc: int
    first_seq: int
    first_ts: int
    ptime_ms: int
    t0: float
    count: int | None  # None: until cancelled
    payloads: list[bytes]  # cycled; sizes may differ (a variable-rate codec)
    ts_step: int = 0  # RTP timestamp ticks per packet; 0: 8 kHz clock (G.711, G.722)

    def ticks(self) -> int:
        return self.ts_step or 8 * self.ptime_ms


class SenderProcess:
    """The agent's handle on the sender process (one per agent process)."""

    _shared: SenderProcess | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.sip.sender", str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        self._next = 0
        self._done: dict[int, Callable[[list[float], int], None]] = {}
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="rtp-sender-rx", daemon=True)
        self._reader.start()
        self._idle_timer: threading.Timer | None = None
        if not self._ready.wait(15.0):
            self.proc.kill()
            raise OSError("the RTP sender process did not start within 15 s")

    @classmethod
    def shared(cls) -> SenderProcess:
        with cls._lock:
            if cls._shared is None or cls._shared.proc.poll() is not None:
                cls._shared = cls()
            return cls._shared

    @classmethod
    def running(cls) -> SenderProcess | None:
        """The live sender process, without starting one."""
        with cls._lock:
            p = cls._shared
            return p if p is not None and p.proc.poll() is None else None

    def add(
        self, sock: socket.socket, plan: StreamPlan, on_done: Callable[[list[float], int], None]
    ) -> int:
        """Hand a stream to the process; `on_done(send_times, errors)` runs on a thread."""
        with self._send_lock:
            handle = self._next
            self._next += 1
            self._done[handle] = on_done
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            header = {
                "op": "add", "id": handle, "nfds": 1, "dest": list(plan.dest),
                "pt": plan.payload_type, "ssrc": plan.ssrc, "seq": plan.first_seq,
                "ts": plan.first_ts, "ptime_ms": plan.ptime_ms, "t0": plan.t0,
                "count": plan.count, "sizes": [len(p) for p in plan.payloads],
                "ts_step": plan.ticks(),
            }  # fmt: skip
            data = _frame(header, b"".join(plan.payloads))
            socket.send_fds(self.sock, [data[:1]], [sock.fileno()])
            self.sock.sendall(data[1:])
        return handle

    def cancel(self, handle: int) -> None:
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(_frame({"op": "cancel", "id": handle}))

    def _read_loop(self) -> None:
        reader = _FrameReader(self.sock)
        while True:
            try:
                frames = reader.read()
            except OSError:
                frames = None
            if frames is None:
                break
            for header, blob, _ in frames:
                if header["op"] == "ready":
                    self._ready.set()
                    continue
                cb = self._done.pop(int(header["id"]), None)
                times = list(struct.unpack(f"!{len(blob) // 8}d", blob))
                if cb is not None:
                    cb(times, int(header.get("errors", 0)))
            with self._send_lock:
                if not self._done and self._idle_timer is None:
                    self._idle_timer = threading.Timer(IDLE_EXIT_S, self._stop_if_idle)
                    self._idle_timer.daemon = True
                    self._idle_timer.start()
        for cb in list(self._done.values()):
            cb([], 0)
        self._done.clear()

    def _stop_if_idle(self) -> None:
        with self._send_lock:
            if self._done:
                return
            with SenderProcess._lock:
                if SenderProcess._shared is self:
                    SenderProcess._shared = None
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)  # the process exits at end of stream
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


# --------------------------------------------------------------------------- the process


@dataclass
class _Stream:
    id: int
    sock: socket.socket
    dest: tuple[str, int]
    pt: int
    ssrc: int
    seq: int
    ts: int
    ptime: float
    t0: float
    count: int | None
    payloads: list[bytes]
    ts_step: int
    i: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self.times: list[float] = []


def _raise_priority() -> None:
    if os.environ.get("QOS_SCOUT_PACER_RT", "1") != "0" and hasattr(os, "SCHED_FIFO"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))


def serve(ctl: socket.socket) -> None:
    """The sender loop: streams by deadline, control frames in between."""
    from agent.sip.rtp import rtp_packet

    _raise_priority()
    ctl.sendall(_frame({"op": "ready", "pid": os.getpid()}))
    reader = _FrameReader(ctl)
    streams: dict[int, _Stream] = {}
    heap: list[tuple[float, int]] = []

    out = bytearray()  # frames for the agent: never block a stream on a slow reader

    def finish(s: _Stream) -> None:
        streams.pop(s.id, None)
        s.sock.close()
        blob = struct.pack(f"!{len(s.times)}d", *s.times)
        out.extend(_frame({"op": "done", "id": s.id, "errors": s.errors}, blob))

    ctl.setblocking(False)
    while True:
        timeout = None
        if heap:
            timeout = max(0.0, heap[0][0] - time.monotonic())
            if timeout < 0.002:
                time.sleep(timeout)  # nanosleep: precise for the last stretch
                timeout = 0.0
        readable, writable, _ = select.select([ctl], [ctl] if out else [], [], timeout)
        if writable:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                del out[: ctl.send(out)]
        if readable:
            try:
                frames = reader.read()
            except (BlockingIOError, InterruptedError):
                frames = []
            if frames is None:
                return
            for header, blob, fds in frames:
                if header["op"] == "add":
                    ends = list(itertools.accumulate(int(n) for n in header["sizes"]))
                    s = _Stream(
                        int(header["id"]), socket.socket(fileno=fds[0]), tuple(header["dest"]),
                        header["pt"], header["ssrc"], header["seq"], header["ts"],
                        header["ptime_ms"] / 1000.0, header["t0"], header["count"],
                        [blob[a:b] for a, b in zip([0, *ends], ends, strict=False)],
                        int(header["ts_step"]),
                    )  # fmt: skip
                    streams[s.id] = s
                    heapq.heappush(heap, (s.t0, s.id))
                elif header["op"] == "cancel" and int(header["id"]) in streams:
                    finish(streams[int(header["id"])])
            continue
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, sid = heapq.heappop(heap)
            if sid not in streams:
                continue
            s = streams[sid]
            data = rtp_packet(
                s.pt, (s.seq + s.i) & 0xFFFF, (s.ts + s.i * s.ts_step) & 0xFFFFFFFF, s.ssrc,
                s.payloads[s.i % len(s.payloads)],
            )  # fmt: skip
            try:
                s.sock.sendto(data, s.dest)
            except OSError:
                s.errors += 1
            s.times.append(time.monotonic())
            s.i += 1
            if s.count is not None and s.i >= s.count:
                finish(s)
            else:
                heapq.heappush(heap, (s.t0 + s.i * s.ptime, sid))
            now = time.monotonic()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
