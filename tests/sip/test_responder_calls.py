"""Agent probes against our own SIP responder on loopback: options, register, calls on
UDP, TCP and TLS, concurrent calls with RFC 6076 ratios, and a clean path without ALG."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import peers

from agent import tls as tls_mod
from agent.probes import ProbeContext, run_probe
from agent.sip.uas import SipUas


@pytest.fixture
async def uas() -> AsyncIterator[SipUas]:
    tls = peers.free_port(socket.SOCK_STREAM, also_tcp=False)
    u = SipUas("127.0.0.1", peers.free_port(), tls_port=tls)
    await u.start()
    yield u
    await u.stop()


async def test_options_reports_code_rtt_and_no_alg(uas: SipUas) -> None:
    r = await run_probe("sip_options", f"sip:127.0.0.1:{uas.port}")
    assert r.success, r.error
    m = r.measurement or {}
    assert m["status_code"] == 200 and 0 < m["rtt_ms"] < 1000
    assert m["sip_alg_detected"] is False and m["alg_evidence"] == []
    assert m["public_address"].startswith("127.0.0.1:")


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_call_completes_with_two_way_rtp(uas: SipUas, transport: str) -> None:
    port = uas.tls_port if transport == "tls" else uas.port
    r = await run_probe(
        "sip_call",
        f"sip:echo@127.0.0.1:{port}",
        {"transport": transport, "tls_verify": False, "duration_s": 2.0},
    )
    assert r.success, r.error
    m = r.measurement or {}
    assert m["setup_ok"] and m["final_code"] == 200 and m["codec"] == "PCMU"
    assert m["srd_ms"] > 0 and m["sdd_ms"] > 0
    out, back = m["out"], m["back"]
    assert out["source"] == "responder" and out["packets_sent"] == 100
    assert out["packets_received"] == 100 and out["loss_pct"] == 0
    assert back["packets_received"] > 80 and back["loss_pct"] == 0
    assert out["mos"] >= 4.3 and back["mos"] >= 4.3
    assert m["rtcp_received"] >= 1
    assert m["sip_alg_detected"] is False


async def test_concurrent_calls_give_rfc6076_ratios(uas: SipUas) -> None:
    r = await run_probe(
        "sip_call",
        f"sip:echo@127.0.0.1:{uas.port}",
        {"duration_s": 1.0, "calls": 4},
        ctx=ProbeContext(timeout_s=60),
    )
    assert r.success, r.error
    ratios = (r.measurement or {})["ratios"]
    assert ratios == {
        "attempts": 4,
        "ser_pct": 100.0,
        "seer_pct": 100.0,
        "isa_pct": 0.0,
        "scr_pct": 100.0,
    }
    assert uas.stats["calls_completed"] == 4


async def test_call_limit_gives_486_and_a_clear_failure(uas: SipUas) -> None:
    uas.max_calls = 0
    r = await run_probe("sip_call", f"sip:echo@127.0.0.1:{uas.port}", {"duration_s": 1.0})
    assert not r.success and r.error is not None
    assert r.error.category == "sip" and "486" in r.error.message
    assert (r.measurement or {})["final_code"] == 486


async def test_no_server_is_a_sip_timeout_naming_retransmissions() -> None:
    import socket

    from agent.sip import client
    from agent.sip.dialog import Leg
    from agent.sip.endpoint import SipTimeoutError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port that swallows everything
        target = await client.resolve(f"sip:127.0.0.1:{s.getsockname()[1]}", "udp")
        ep = await client.open_endpoint(target)
        msg = Leg("sip:a@x", target.uri, "sip:a@127.0.0.1").request(
            "OPTIONS", ep.via_for(target.addr)
        )
        try:
            with pytest.raises(SipTimeoutError, match=r"within 3\.2 s \(6 retransmissions\)"):
                await ep.request(msg, target.addr, t1=0.05)
        finally:
            ep.close()


async def test_183_early_media_then_answer(uas: SipUas) -> None:
    from agent.sip import client
    from agent.sip.call import CallSettings, place_call

    target = await client.resolve(f"sip:echo@127.0.0.1:{uas.port}", "udp")
    ep = await client.open_endpoint(target)
    try:
        res = await place_call(ep, target, CallSettings(
            duration_s=1.0, extra_headers=[("X-Scout-Answer-After-Ms", "600")],
        ))  # fmt: skip
    finally:
        ep.close()
    assert res.setup_ok and res.early_media and res.response_codes[:2] == [100, 183]
    assert res.srd_ms is not None and res.answer_ms is not None
    assert res.answer_ms - res.srd_ms >= 500  # post-dial delay ends at the 183, not the 200
    # The early stream counts: more packets arrived than one second of answered call holds.
    assert res.back is not None and (res.back.packets_received or 0) > 70


async def test_cancel_while_ringing_ends_with_487(uas: SipUas) -> None:
    from agent.sip import client
    from agent.sip.call import CallSettings, place_call

    target = await client.resolve(f"sip:echo@127.0.0.1:{uas.port}", "udp")
    ep = await client.open_endpoint(target)
    try:
        res = await place_call(ep, target, CallSettings(
            duration_s=1.0, answer_timeout_s=0.5,
            extra_headers=[("X-Scout-Answer-After-Ms", "5000")],
        ))  # fmt: skip
    finally:
        ep.close()
    assert not res.setup_ok and res.final_code == 487
    assert "CANCEL sent" in (res.failure or "")
    assert uas.calls == {}


async def test_ipv6_call_and_a_clear_tls_certificate_error() -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    u = SipUas("::1", 0, tls_port=0)
    await u.start()
    try:
        call = await run_probe("sip_call", f"sip:echo@[::1]:{u.port}", {"duration_s": 1.0})
        strict = await run_probe("sip_options", f"sip:[::1]:{u.tls_port}", {"transport": "tls"})
    finally:
        await u.stop()
    assert call.success, call.error
    m = call.measurement or {}
    assert m["out"]["loss_pct"] == 0 and m["public_address"].startswith("[::1]:")
    assert not strict.success and strict.error is not None
    assert strict.error.category == "peer"
    assert "TLS certificate of ::1 not accepted: self-signed certificate" in strict.error.message


def test_qos_scout_responder_serves_sip_on_the_given_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    port, tls = peers.free_port(), peers.free_port()
    argv = [sys.executable, "-m", "agent.cli.main", "responder", "--bind", "127.0.0.1",
            "--twamp-port", "off", "--bandwidth-port", "off", "--natprobe-port", "off",
            "--sip-port", str(port), "--sip-tls-port", str(tls)]  # fmt: skip
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("responder ready"), line
        udp = asyncio.run(run_probe("sip_options", f"sip:127.0.0.1:{port}"))
        tls_r = asyncio.run(
            run_probe(
                "sip_options", f"sip:127.0.0.1:{tls}", {"transport": "tls", "tls_verify": False}
            )
        )
        # OPTIONS over TLS again and again: one client context (making one loads the CA store)
        import ssl

        made: list[object] = []
        real = ssl.create_default_context
        monkeypatch.setattr(tls_mod, "_CLIENT_CONTEXTS", {})
        monkeypatch.setattr(ssl, "create_default_context", lambda *a: made.append(a) or real(*a))
        for _ in range(2):
            again = asyncio.run(run_probe("sip_options", f"sip:127.0.0.1:{tls}",
                                          {"transport": "tls", "tls_verify": False}))  # fmt: skip
            assert again.success, again.error
        assert len(made) == 1
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert udp.success and (udp.measurement or {})["server"] == "qos-scout", udp.error
    assert tls_r.success, tls_r.error
    assert f"SIP responder on 127.0.0.1 port {port} (UDP/TCP), TLS {tls}" in err


async def test_port_zero_takes_another_pick_when_tcp_holds_the_udp_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Port 0: the UDP port the system picked may be taken on TCP; the responder picks again
    rather than fail (a loaded test run met exactly this)."""
    from agent.sip import transport

    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    real = transport.UdpTransport.bind.__func__  # type: ignore[attr-defined]
    picks: list[int] = []

    async def first_the_busy_port(cls, on_message, host, port=0):  # type: ignore[no-untyped-def]
        got = await real(cls, on_message, host, busy if not picks else port)
        picks.append(got.local[1])
        return got

    monkeypatch.setattr(transport.UdpTransport, "bind", classmethod(first_the_busy_port))
    u = SipUas("127.0.0.1", 0)
    try:
        await u.start()
        assert picks[0] == busy and len(picks) == 2 and u.port == picks[1] != busy
        r = await run_probe("sip_options", f"sip:127.0.0.1:{u.port};transport=tcp")
        assert r.success, r.error
    finally:
        await u.stop()
        held.close()
    # A port asked for explicitly is not swapped for another: the error names it.
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        with pytest.raises(OSError, match=str(port)):
            await SipUas("127.0.0.1", port).start()
    finally:
        held.close()
