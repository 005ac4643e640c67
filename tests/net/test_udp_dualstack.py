"""A dual-stack responder (`--bind ::`) answers IPv6 and IPv4 senders and keeps their DSCP."""

from __future__ import annotations

import socket

import pytest

from agent.probes import run_probe
from agent.responder.reflector import TwampReflector


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")
@pytest.mark.parametrize("host", ["[::1]", "127.0.0.1"])
async def test_dual_stack_reflector_reports_and_returns_ef(host: str) -> None:
    refl = TwampReflector("::", 0)
    await refl.start()
    try:
        res = await run_probe("udp", f"{host}:{refl.address[1]}", {"duration_s": 0.4})
    finally:
        await refl.stop()
    assert res.success, res.error
    m = res.measurement or {}
    assert m["received"] == 20
    assert m["out"]["dscp_received"] == 46
    assert m["back"]["dscp_received"] == 46
