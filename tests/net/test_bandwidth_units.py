"""Bandwidth maths, TCP_INFO parsing, UDP sink counters (numbers), and a loopback run."""

from __future__ import annotations

import asyncio
import struct

import pytest

from agent.probes import run_probe
from agent.probes.bandwidth import Span, buffer_delay_pct, throughput
from agent.responder.bandwidth import BandwidthServer
from agent.responder.tcpinfo import TcpInfo
from agent.responder.udpsink import UdpSink


def test_throughput_counts_bytes_from_first_to_last_byte_of_all_streams() -> None:
    spans = [Span(125_000_000, 0, 10**10), Span(125_000_000, 5 * 10**8, 10**10)]
    total, seconds, bps, per = throughput(spans)
    assert (total, seconds) == (250_000_000, 10.0)
    assert bps == pytest.approx(200e6)
    assert per == pytest.approx([100e6, 100e6])
    assert throughput([Span(0, None, None)])[2] == 0.0


def test_buffer_delay_is_rfc6349_percent_increase_over_idle_rtt() -> None:
    assert buffer_delay_pct(30.0, 20.0) == pytest.approx(50.0)
    assert buffer_delay_pct(None, 20.0) is None
    assert buffer_delay_pct(30.0, 0.0) is None


def test_tcp_info_fields_are_read_at_their_kernel_offsets() -> None:
    raw = bytearray(232)
    struct.pack_into("=II", raw, 68, 1500, 300)  # rtt, rttvar (µs)
    struct.pack_into("=I", raw, 80, 42)  # cwnd
    struct.pack_into("=I", raw, 100, 7)  # total_retrans
    struct.pack_into("=I", raw, 148, 900)  # min_rtt
    struct.pack_into("=Q", raw, 120, 10**9)  # bytes_acked
    info = TcpInfo.parse(bytes(raw))
    assert (info.rtt_us, info.rttvar_us, info.snd_cwnd, info.total_retrans) == (1500, 300, 42, 7)
    assert (info.min_rtt_us, info.bytes_acked) == (900, 10**9)
    assert TcpInfo.parse(bytes(raw[:104])).min_rtt_us is None
    with pytest.raises(ValueError, match="at least 104"):
        TcpInfo.parse(b"\x00" * 50)


def test_udp_sink_counts_loss_duplicates_reordering_and_rfc3550_jitter() -> None:
    sink = UdpSink()
    tid = b"12345678"
    ms = 1_000_000
    # packets every 10 ms, delays 1,3,1,3 ms ... ; packet 5 missing; 7 twice; 9 before 8
    order = [0, 1, 2, 3, 4, 6, 7, 7, 9, 8]
    for seq in order:
        send = seq * 10 * ms
        sink.add(tid, seq, send, send + (3 if seq % 2 else 1) * ms, 200, now=0.0)
    r = sink.report(tid)
    assert (r["received"], r["duplicates"], r["reordered"], r["max_seq"]) == (9, 1, 1, 9)
    assert r["bytes"] == 9 * 200
    assert 0 < r["jitter_ms"] < 2.0
    sink.add(b"other---", 0, 0, 0, 10, now=1000.0)  # expires the first test
    assert sink.report(tid)["received"] == 0


async def test_tcp_and_udp_modes_run_against_the_server_on_loopback() -> None:
    server = BandwidthServer("127.0.0.1", 0)
    await server.start()
    try:
        target = f"127.0.0.1:{server.address[1]}"
        tcp = await run_probe("bandwidth", target, {"duration_s": 1, "streams": 2})
        udp = await run_probe(
            "bandwidth", target, {"mode": "udp", "duration_s": 1, "udp_rate_kbps": 2000}
        )
    finally:
        await server.stop()
    assert tcp.success, tcp.error
    m = tcp.measurement or {}
    assert m["upload"]["throughput_bps"] > 100e6 and m["download"]["throughput_bps"] > 100e6
    assert len(m["upload"]["per_stream_bps"]) == 2
    assert udp.success, udp.error
    for d in ("udp_up", "udp_down"):
        u = (udp.measurement or {})[d]
        assert u["sent"] == pytest.approx(2000 * 1000 / 8 / 1200, abs=1)
        assert u["lost"] == 0 and u["received"] == u["sent"]


async def test_a_missing_responder_is_a_clear_network_error() -> None:
    res = await run_probe("bandwidth", "127.0.0.1:9", {"duration_s": 1})
    assert not res.success and res.error is not None
    assert res.error.category == "network"
    assert "127.0.0.1 port 9" in res.error.message


def test_server_stays_usable_after_a_garbage_control_message() -> None:
    async def main() -> bool:
        server = BandwidthServer("127.0.0.1", 0)
        await server.start()
        try:
            r, w = await asyncio.open_connection(*server.address)
            w.write(struct.pack("!I", 5) + b"nope!")
            await w.drain()
            reply = await r.read(1000)
            w.close()
            ok = await run_probe("bandwidth", f"127.0.0.1:{server.address[1]}",
                                 {"duration_s": 0.5, "streams": 1, "direction": "up"})  # fmt: skip
            return b'"ok": false' in reply and ok.success and server.malformed == 1
        finally:
            await server.stop()

    assert asyncio.run(main())


async def test_several_agents_can_test_at_once() -> None:
    server = BandwidthServer("127.0.0.1", 0)
    await server.start()
    try:
        target = f"127.0.0.1:{server.address[1]}"
        opts = {"duration_s": 1, "streams": 2, "direction": "down"}
        results = await asyncio.gather(*(run_probe("bandwidth", target, opts) for _ in range(3)))
    finally:
        await server.stop()
    assert all(r.success for r in results), [r.error for r in results]
    assert all((r.measurement or {})["download"]["bytes"] > 0 for r in results)


def test_discarding_receive_counts_every_byte_sent() -> None:
    import socket
    import threading

    from agent.responder.bandwidth import Discard

    server = socket.create_server(("127.0.0.1", 0))
    total = 10 * 1024 * 1024 + 7

    def send() -> None:
        with socket.create_connection(server.getsockname()) as c:
            c.sendall(bytes(total))

    t = threading.Thread(target=send)
    t.start()
    conn, _ = server.accept()
    recv, got = Discard(), 0
    with conn:
        while n := recv(conn):
            got += n
    t.join()
    server.close()
    assert got == total
