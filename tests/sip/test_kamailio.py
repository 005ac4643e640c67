"""REGISTER and OPTIONS against a real Kamailio registrar with digest auth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import peers

from agent.sip import client

pytestmark = pytest.mark.skipif(peers.missing("kamailio") is not None, reason="kamailio missing")


@pytest.mark.parametrize(("algorithm", "transport"), [("MD5", "udp"), ("SHA-256", "tcp")])
async def test_register_with_the_right_password_succeeds(algorithm: str, transport: str) -> None:
    with peers.kamailio("s3cret", algorithm=algorithm) as port:
        target = await client.resolve(f"sip:alice@127.0.0.1:{port}", transport)
        ep = await client.open_endpoint(target)
        try:
            res = await client.register(ep, target, user="alice", password="s3cret", expires=300)
            again = await client.register(
                ep, target, user="alice", password="s3cret", expires=60, previous=res
            )
        finally:
            ep.close()
    assert (res.status_code, res.auth_ok, res.challenges) == (200, True, 1)
    assert res.expires_s == 300 and again.expires_s == 60
    # The refresh reused the nonce with nc=2: no second challenge, same Call-ID.
    assert again.challenges == 0 and again.auth_ok is True and res.digest.nc == 2
    assert again.leg.call_id == res.leg.call_id
    assert 0 < res.rrd_ms < 2000
    assert res.public_address is not None and res.public_address.startswith("127.0.0.1:")


async def test_wrong_password_is_a_clear_auth_failure_not_a_timeout() -> None:
    with peers.kamailio("s3cret") as port:
        target = await client.resolve(f"sip:bob@127.0.0.1:{port}", "udp")
        ep = await client.open_endpoint(target)
        t0 = time.monotonic()
        try:
            res = await client.register(ep, target, user="bob", password="wrong")
        finally:
            ep.close()
    assert (res.status_code, res.auth_ok) == (401, False)
    assert time.monotonic() - t0 < 5


async def test_options_reports_status_and_rtt() -> None:
    with peers.kamailio("x") as port:
        target = await client.resolve(f"sip:127.0.0.1:{port}", "udp")
        ep = await client.open_endpoint(target)
        try:
            res = await client.send_options(ep, target)
        finally:
            ep.close()
    assert res.status_code == 200 and 0 < res.rtt_ms < 1000
    assert res.server is not None and "kamailio" in res.server


async def test_register_probe_reports_rrd_and_a_wrong_password_clearly() -> None:
    from agent.probes import run_probe

    with peers.kamailio("s3cret") as port:
        good = await run_probe(
            "sip_register", f"sip:carol@127.0.0.1:{port}", {"user": "carol", "password": "s3cret"}
        )
        bad = await run_probe(
            "sip_register", f"sip:carol@127.0.0.1:{port}", {"user": "carol", "password": "nope"}
        )
    assert good.success, good.error
    g = good.measurement or {}
    assert g["status_code"] == 200 and g["auth_ok"] is True and g["expires_s"] == 300
    assert g["rrd_ms"] > 0
    assert not bad.success and bad.error is not None
    assert bad.error.category == "sip"
    assert "authentication failed (credentials rejected): 401" in bad.error.message
    assert (bad.measurement or {})["auth_ok"] is False
    assert bad.duration_ms < 5000


async def test_call_through_kamailio_to_the_responder_completes() -> None:
    from agent.probes import run_probe
    from agent.sip.uas import SipUas

    uas = SipUas("127.0.0.1", peers.free_port())
    await uas.start()
    try:
        with peers.kamailio("s3cret", uas=f"127.0.0.1:{uas.port}") as port:
            r = await run_probe(
                "sip_call",
                f"sip:echo@127.0.0.1:{port}",
                {"user": "dave", "password": "s3cret", "duration_s": 2.0},
            )
    finally:
        await uas.stop()
    assert r.success, r.error
    m = r.measurement or {}
    assert 407 in m["response_codes"] and m["final_code"] == 200  # proxy auth answered
    assert m["out"]["loss_pct"] == 0 and m["back"]["loss_pct"] == 0
    # G.711 with no loss: good quality; the delay term of the E-model moves with the host's
    # load (4.37 on a quiet host, 4.28 measured with both cores busy).
    assert m["out"]["mos"] >= 4.2 and m["back"]["mos"] >= 4.2
    assert uas.stats["calls_completed"] == 1  # the BYE went through Kamailio's route set
    assert m["sip_alg_detected"] is False, m["alg_evidence"]  # a proxy is not an ALG


async def test_unanswered_call_is_cancelled_and_ends_with_487() -> None:
    from agent.probes import run_probe

    silent = peers.free_port()  # Kamailio relays the INVITE to a port where nobody answers
    with peers.kamailio("s3cret", uas=f"127.0.0.1:{silent}") as port:
        r = await run_probe(
            "sip_call",
            f"sip:echo@127.0.0.1:{port}",
            {"user": "erin", "password": "s3cret", "duration_s": 1.0, "answer_timeout_s": 2.0},
        )
    assert not r.success and r.error is not None
    m = r.measurement or {}
    assert m["final_code"] == 487 and not m["setup_ok"]
    assert "no answer within 2 s: CANCEL sent" in (m["failure"] or "")
    assert r.duration_ms < 10_000
