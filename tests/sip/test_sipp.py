"""Interop with SIPp: SIPp as UAS with RTP echo for our call, and SIPp as UAC calling our
responder."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import peers

from agent.probes import run_probe
from agent.sip.uas import SipUas

pytestmark = pytest.mark.skipif(peers.missing("sipp") is not None, reason="sipp is not installed")


async def test_call_to_sipp_uas_with_rtp_echo_is_clean() -> None:
    with peers.sipp_uas_echo() as (port, proc, _):
        r = await run_probe("sip_call", f"sip:service@127.0.0.1:{port}", {"duration_s": 3.0})
        proc.wait(10)
    assert r.success, r.error
    m = r.measurement or {}
    assert m["setup_ok"] and 180 in m["response_codes"] and m["codec"] == "PCMU"
    assert m["echo_detected"]
    for direction in (m["out"], m["back"]):
        assert direction["source"] == "echo"
        assert direction["packets_sent"] == 150 and direction["loss_pct"] == 0
        assert direction["mos"] >= 4.3  # G.711 with PLC, 60 ms buffer: 4.37 at most
    assert proc.returncode == 0  # SIPp saw a complete call (BYE answered)


@pytest.fixture
async def uas() -> AsyncIterator[SipUas]:
    u = SipUas("127.0.0.1", peers.free_port())
    await u.start()
    yield u
    await u.stop()


async def test_sipp_uac_completes_against_our_responder(uas: SipUas) -> None:
    import asyncio

    rc, output = await asyncio.to_thread(peers.run_sipp_uac, uas.port, 3)
    assert rc == 0, output
    assert uas.stats["calls_completed"] == 3
