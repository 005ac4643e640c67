"""The RTP sender process and the pacing thread put packets on the wire on schedule."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agent.sip.media import g711_payloads
from agent.sip.pacer import Pacer
from agent.sip.sender import SenderProcess, StreamPlan


def _sink() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def test_sender_process_sends_the_planned_stream() -> None:
    sink, src = _sink(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    src.bind(("127.0.0.1", 0))
    done = threading.Event()
    got: dict[str, object] = {}

    def on_done(times: list[float], errors: int) -> None:
        got.update(times=times, errors=errors)
        done.set()

    proc = SenderProcess.shared()  # started (or reused) before the schedule begins
    t0 = time.monotonic() + 0.05
    plan = StreamPlan(sink.getsockname(), 0, 0x1234, 65530, 7, 20, t0, 50,
                      list(g711_payloads(0, 20)))  # fmt: skip
    proc.add(src, plan, on_done)
    seqs = []
    for _ in range(50):
        data, addr = sink.recvfrom(2048)
        assert addr[1] == src.getsockname()[1]  # sent from our socket, passed to the process
        seqs.append(int.from_bytes(data[2:4], "big"))
    assert done.wait(5)
    assert seqs == [(65530 + i) & 0xFFFF for i in range(50)]
    times = got["times"]
    assert isinstance(times, list) and len(times) == 50 and got["errors"] == 0
    lateness = sorted(t - (t0 + i * 0.020) for i, t in enumerate(times))
    assert lateness[0] >= 0 and lateness[25] < 0.005  # median within 5 ms even on a busy host


def test_cancelled_stream_returns_what_was_sent() -> None:
    sink, src = _sink(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    done = threading.Event()
    got: list[float] = []
    plan = StreamPlan(sink.getsockname(), 8, 1, 0, 0, 20, time.monotonic(), None,
                      list(g711_payloads(8, 20)))  # fmt: skip
    proc = SenderProcess.shared()
    handle = proc.add(src, plan, lambda t, e: (got.extend(t), done.set()))
    for _ in range(5):  # the stream is under way: five packets arrived
        sink.recv(2048)
    proc.cancel(handle)
    assert done.wait(5)
    assert 5 <= len(got) < 400  # what was sent, not the 8 s plan (400 packets)


def test_thread_pacer_calls_each_stream_at_its_deadlines() -> None:
    calls: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.monotonic() + 0.01

    def send(deadline: float) -> float | None:
        calls.append((deadline, time.monotonic()))
        if len(calls) == 20:
            done.set()
            return None
        return t0 + len(calls) * 0.01

    Pacer.shared().add(send, t0)
    assert done.wait(5)
    assert [d for d, _ in calls] == pytest.approx([t0 + i * 0.01 for i in range(20)])
    assert all(actual >= deadline for deadline, actual in calls)


def test_sender_process_steps_timestamps_by_the_codec_clock() -> None:
    # Opus: 48 kHz RTP clock, 960 ticks per 20 ms packet; payloads of any size are kept.
    sink, src = _sink(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    done = threading.Event()
    payloads = [b"\x01" * 80, b"\x02" * 75, b"\x03" * 91]
    plan = StreamPlan(sink.getsockname(), 111, 0x99, 10, 1000, 20, time.monotonic() + 0.05, 6,
                      payloads, ts_step=960)  # fmt: skip
    SenderProcess.shared().add(src, plan, lambda t, e: done.set())
    got = [sink.recvfrom(2048)[0] for _ in range(6)]
    assert done.wait(5)
    assert [int.from_bytes(d[4:8], "big") for d in got] == [1000 + 960 * i for i in range(6)]
    assert [d[12:] for d in got] == payloads * 2
    assert {d[1] & 0x7F for d in got} == {111}
