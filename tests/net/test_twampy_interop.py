"""Interop with Nokia's twampy on loopback, both ways: our sender against its responder (TWAMP-light
and STAMP packets) and its sender against our reflector; the figures agree with what it prints."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import netlab
import pytest
import twampy_peer

from agent.probes import run_probe
from agent.responder.reflector import TwampReflector

TWAMPY = twampy_peer.command()
pytestmark = pytest.mark.skipif(TWAMPY is None, reason=twampy_peer.SKIP_REASON)


@pytest.fixture
def twampy_responder(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """twampy's responder on a free loopback port, marking its replies DSCP 46 (TOS 0xb8)."""
    assert TWAMPY is not None
    port = netlab.free_udp_port()
    log = tmp_path / "twampy.log"
    p = subprocess.Popen([*TWAMPY, "responder", f"127.0.0.1:{port}", "--tos", "184", "-v",
                          "-l", str(log)])  # fmt: skip
    try:
        twampy_peer.wait_udp_bound(port, twampy_peer.local_run, p)
        yield port, log
    finally:
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("protocol", ["twamp-light", "stamp"])
async def test_our_sender_against_twampy_responder_loses_nothing(
    twampy_responder: tuple[int, Path], protocol: str
) -> None:
    port, log = twampy_responder
    # same host, one clock: the one-way delays from the timestamps are exact
    opts = {"duration_s": 1.0, "packet_rate": 100, "protocol": protocol,
            "synchronized_clocks": True}  # fmt: skip
    res = await run_probe("udp", f"127.0.0.1:{port}", opts)
    assert res.success, res.error
    m = res.measurement or {}
    # twampy answers 38-octet reflections (no MBZ/TTL): read for what they hold
    assert (m["sent"], m["received"], m["lost"], m["malformed_replies"]) == (100, 100, 0, 0)
    assert m["out"]["lost"] == 0 and m["back"]["lost"] == 0
    assert m["protocol"] == "twamp-light"  # it does not echo our SSID: no RFC 8972
    assert any(s.startswith("reflector TTL (replies of 38 octets") for s in m["not_reported"])
    assert m["out"]["dscp_received"] is None and m["reflector_reports_dscp"] is False
    assert m["back"]["dscp_received"] == 46  # what its replies carried when they arrived
    # what twampy logged: every packet of ours, once, in order, from one source port, and
    # its outbound delay (its T2 minus our T1, printed to 0.01 ms) has our median
    seen = [pkts for pkts in twampy_peer.requests_by_port(log.read_text()).values()
            if len(pkts) >= 100]  # fmt: skip
    assert len(seen) == 1 and [s for s, _ in seen[0]] == list(range(100))
    theirs = statistics.median(d for _, d in seen[0])
    assert abs(m["out"]["one_way_delay_ms"] - theirs) <= 0.01, (m["out"], theirs)


@pytest.mark.parametrize("padding", [0, 158])
def test_twampy_sender_against_our_reflector_loses_nothing(
    our_reflector: TwampReflector, padding: int
) -> None:
    assert TWAMPY is not None
    n = 200
    out = subprocess.run(
        [*TWAMPY, "sender", f"127.0.0.1:{our_reflector.address[1]}",
         f"127.0.0.1:{netlab.free_udp_port()}", "--count", str(n), "--interval", "5",
         "--padding", str(padding)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    table = twampy_peer.parse_table(out.stdout)
    assert {k: r.loss_pct for k, r in table.items()} == {
        "Outbound": 0.0, "Inbound": 0.0, "Roundtrip": 0.0}  # fmt: skip
    assert twampy_peer.eventually(lambda: our_reflector.reflected == n)
    assert our_reflector.malformed == 0
    rt = table["Roundtrip"]
    assert 0 < rt.min_ms <= rt.avg_ms <= rt.max_ms
