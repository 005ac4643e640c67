"""The udp probe's packet path: a recorded-style trace of replies (bytes and ancillary data as
recvmsg() returns them) read into the figures, checked against the same figures worked out
here from the trace's own timestamps; and a stream cancelled halfway stops its sender."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import statistics
import struct
import threading
import time

import pytest

from agent import quality
from agent.probes import run_probe
from agent.probes.udp import UdpOptions, _decode
from agent.probes.udp_analysis import StreamParams, analyse
from agent.responder import sockopts
from agent.wire.twamp import QOS_SCOUT_SIGNATURE, ReflectorPacket, ns_to_ntp

MS = 1_000_000
N = 1500  # the default schedule's stream: 30 s of G.711 at 50 packets/s
LOST_OUT = {100, 500, 501, 900}  # never reached the reflector
LOST_BACK = {200, 1200}  # reflected, never came back
REFLECTOR_CLOCK_AHEAD_NS = 123_456_789_012  # cancels in RTT and in both jitters


def _trace() -> tuple[list[int], list[tuple[bytes, list[tuple[int, int, bytes]]]], list[dict]]:
    """Send times, the replies in arrival order, and each packet's four timestamps."""
    rng = random.Random(18)
    base = 1_764_800_000 * 1_000_000_000
    t1s = [base + i * 20 * MS + rng.randrange(0, 300_000) for i in range(N)]
    packets: list[dict] = []
    replies = []
    r = 0
    for s in range(N):
        if s in LOST_OUT:
            continue
        t2 = t1s[s] + rng.randrange(5 * MS, 9 * MS) + REFLECTOR_CLOCK_AHEAD_NS
        t3 = t2 + rng.randrange(20_000, 60_000)
        t4 = t3 - REFLECTOR_CLOCK_AHEAD_NS + rng.randrange(4 * MS, 8 * MS)
        p = {"s": s, "r": r, "t1": t1s[s], "t2": t2, "t3": t3, "t4": t4}
        r += 1
        packets.append(p)
        if s in LOST_BACK:
            continue
        data = bytes(
            ReflectorPacket(
                p["r"], ns_to_ntp(t3), 0x0C01, ns_to_ntp(t2), s, ns_to_ntp(t1s[s]), 0x0C01, 61,
                46 << 2, QOS_SCOUT_SIGNATURE + bytes(127),
            )
        )  # fmt: skip
        anc = [
            (socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS, struct.pack("qq", *divmod(t4, 10**9))),
            (socket.IPPROTO_IP, socket.IP_TOS, bytes([46 << 2])),
            (socket.IPPROTO_IP, socket.IP_TTL, struct.pack("i", 63)),
        ]
        replies.append((t4, data, anc))
    replies.sort(key=lambda x: x[0])
    return t1s, [(d, a) for _t, d, a in replies], packets


def _jitter_ms(pairs: list[tuple[int, int]]) -> float:
    """RFC 3550 §6.4.1 over (send ns, receive ns) in arrival order, worked in integer ns."""
    j = 0.0
    for (s0, r0), (s1, r1) in itertools.pairwise(pairs):
        j += (abs((r1 - r0) - (s1 - s0)) / MS - j) / 16
    return j


def _burst_ratio(lost: set[int], n: int) -> float:
    """G.107 BurstR = 1 / (p + q) of a two-state loss model, counted on the loss mask."""
    mask = [i not in lost for i in range(n)]
    pairs = list(itertools.pairwise(mask))
    p = sum(a and not b for a, b in pairs) / sum(a for a, _ in pairs)
    q = sum(not a and b for a, b in pairs) / sum(not a for a, _ in pairs)
    return 1 / (p + q)


def test_a_trace_of_replies_gives_loss_jitter_rtt_and_mos_worked_out_from_it() -> None:
    t1s, replies, packets = _trace()
    received = [(d, sockopts.parse_ancillary(a)) for d, a in replies]
    refl, malformed, signed = _decode(received, t1s, UdpOptions(duration_s=30))
    m = analyse(refl, StreamParams(sent=N, reflector_counts=signed))

    back = [p for p in packets if p["s"] not in LOST_BACK]
    rtts = [((p["t4"] - p["t1"]) - (p["t3"] - p["t2"])) / MS for p in back]
    assert (malformed, signed, len(refl)) == (0, True, N - len(LOST_OUT) - len(LOST_BACK))
    assert (m.sent, m.received, m.lost) == (N, len(back), len(LOST_OUT) + len(LOST_BACK))
    assert (m.out.packets_sent, m.out.lost) == (N, len(LOST_OUT))
    assert (m.back.packets_sent, m.back.lost) == (len(packets), len(LOST_BACK))
    assert m.out.loss_pct == pytest.approx(100 * len(LOST_OUT) / N)
    assert m.back.loss_pct == pytest.approx(100 * len(LOST_BACK) / len(packets))
    assert m.rtt_ms.median == pytest.approx(statistics.median(rtts), abs=1e-6)
    assert m.rtt_ms.max == pytest.approx(max(rtts), abs=1e-6)
    # seconds as floats (as the analysis takes them) hold ~0.2 µs at today's epoch
    fwd = sorted(packets, key=lambda p: p["t2"])
    assert m.out.jitter_ms == pytest.approx(_jitter_ms([(p["t1"], p["t2"]) for p in fwd]), abs=1e-3)
    assert m.back.jitter_ms == pytest.approx(
        _jitter_ms([(p["t3"], p["t4"]) for p in sorted(back, key=lambda p: p["t4"])]), abs=1e-3
    )
    codec = quality.get_codec("G711_PLC")
    mouth_to_ear = statistics.median(rtts) / 2 + 60.0 + 20.0 + codec.lookahead_ms
    reflected_lost_back = {r for r, p in enumerate(packets) if p["s"] in LOST_BACK}
    for d, lost, sent in ((m.out, LOST_OUT, N), (m.back, reflected_lost_back, len(packets))):
        assert d.late_discards == 0 and d.dscp_received == 46
        burst = _burst_ratio(lost, sent)
        assert d.burst_ratio == pytest.approx(burst)
        ref = quality.emodel(codec, mouth_to_ear, 100 * len(lost) / sent, burst)
        assert d.mos == pytest.approx(ref.mos, abs=1e-9)
        assert d.r_factor == pytest.approx(ref.r_factor, abs=1e-9)


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "udp-stream"]


async def test_a_cancelled_stream_stops_its_sender_thread() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes packets, answers none
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        opts = {"duration_s": 60, "packet_rate": 50}
        task = asyncio.create_task(run_probe("udp", f"127.0.0.1:{sink.getsockname()[1]}", opts))
        first = await asyncio.wait_for(loop.sock_recv(sink, 2048), timeout=10)
        assert len(first) == UdpOptions().size() and _stream_threads()
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 5.0  # not the rest of the 60 s stream
        assert _stream_threads() == []  # joined before the probe's socket closed
    finally:
        sink.close()
