"""The udp probe in STAMP mode (RFC 8762/8972) against our reflector on loopback, and replies
it cannot read named in the result."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest
import twampy_peer
from test_udp_dualstack import _has_ipv6_loopback

from agent.errors import ConfigError
from agent.probes import run_probe
from agent.responder.reflector import TwampReflector
from agent.wire.stamp import FLAG_U, StampReflectorPacket, StampSenderPacket
from agent.wire.twamp import ns_to_ntp


@pytest.mark.parametrize("protocol", ["stamp", "auto"])
async def test_stamp_against_our_reflector_reports_dscp_per_direction(
    our_reflector: TwampReflector, protocol: str
) -> None:
    port = our_reflector.address[1]
    opts = {"duration_s": 0.5, "packet_rate": 100, "protocol": protocol, "dscp": 34}
    res = await run_probe("udp", f"127.0.0.1:{port}", opts)
    assert res.success, res.error
    m = res.measurement or {}
    assert m["protocol"] == "stamp" and 1 <= m["ssid"] <= 0xFFFF
    assert (m["sent"], m["received"], m["malformed_replies"]) == (50, 50, 0)
    assert m["payload_bytes"] == 172  # the codec's size, symmetric both ways
    assert m["reflector_reports_dscp"] is True and m["not_reported"] == []
    for d in ("out", "back"):
        assert (m[d]["dscp_sent"], m[d]["dscp_received"], m[d]["lost"]) == (34, 34, 0)
    assert m["direction_loss_method"].startswith("reflector sequence counter")
    assert twampy_peer.eventually(lambda: our_reflector.reflected_stamp == 50)
    assert our_reflector.reflected == 0


@pytest.mark.parametrize("protocol", ["twamp-light", "stamp"])
async def test_replies_that_cannot_be_read_are_counted_and_named(protocol: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            sock.sendto(data[:20], peer)  # too short to hold the timestamps

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        opts = {"duration_s": 0.2, "packet_rate": 50, "wait_s": 0.5, "protocol": protocol}
        res = await run_probe("udp", f"127.0.0.1:{sock.getsockname()[1]}", opts)
    finally:
        stop.set()
        t.join()
        sock.close()
    assert not res.success
    assert "10 replies came back" in (res.error.message if res.error else "")
    assert "malformed_replies" in (res.error.message if res.error else "")
    assert (res.measurement or {})["malformed_replies"] == 10


async def test_an_unknown_protocol_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as exc:
        await run_probe("udp", "127.0.0.1:9", {"protocol": "stamp2"})
    assert str(exc.value) == (
        "udp options: protocol: Input should be 'twamp-light', 'stamp' or 'auto'"
    )


async def test_a_stateless_stamp_reflector_without_cos_gives_round_trip_figures_only() -> None:
    """A foreign STAMP reflector: echoes the SSID, copies the sender's sequence number, does
    not know the CoS TLV (flags it U) and loses the reply to sender packet 5."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            rx = ns_to_ntp(time.time_ns())
            pkt = StampSenderPacket.parse(data)
            if pkt.seq == 5:
                continue
            tlvs = tuple(replace(t, flags=t.flags | FLAG_U) for t in pkt.tlvs)
            tx = ns_to_ntp(time.time_ns())
            reply = StampReflectorPacket(
                pkt.seq, tx, 1, pkt.ssid, rx, pkt.seq, pkt.timestamp, pkt.error_estimate, 64, tlvs
            )
            sock.sendto(bytes(reply), peer)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        opts = {"duration_s": 0.4, "packet_rate": 50, "wait_s": 0.5, "protocol": "stamp"}
        res = await run_probe("udp", f"127.0.0.1:{sock.getsockname()[1]}", opts)
    finally:
        stop.set()
        t.join()
        sock.close()
    assert res.success, res.error
    m = res.measurement or {}
    assert m["protocol"] == "stamp" and (m["sent"], m["lost"]) == (20, 1)
    assert m["direction_loss_method"].startswith("unavailable")
    assert m["reflector_reports_dscp"] is False
    assert m["out"]["dscp_received"] is None and m["back"]["dscp_sent"] is None
    assert m["back"]["dscp_received"] is not None  # read here, from the reply's IP header
    assert m["not_reported"] == [
        "DSCP/ECN received at the reflector (it did not fill in the Class-of-Service TLV)",
        "whether the reflector keeps a per-session counter (direction of loss is inferred "
        "from its sequence numbers)",
    ]


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")
@pytest.mark.parametrize("host", ["[::1]", "127.0.0.1"])
async def test_stamp_on_a_dual_stack_reflector_keeps_dscp_both_ways(host: str) -> None:
    refl = TwampReflector("::", 0)
    await refl.start()
    try:
        opts = {"duration_s": 0.4, "protocol": "stamp", "dscp": 26}
        res = await run_probe("udp", f"{host}:{refl.address[1]}", opts)
    finally:
        await refl.stop()
    assert res.success, res.error
    m = res.measurement or {}
    assert m["protocol"] == "stamp" and m["received"] == 20
    assert (m["out"]["dscp_received"], m["back"]["dscp_received"]) == (26, 26)
