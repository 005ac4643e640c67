"""The NAT binding test: wire format, the responder service, and the probe on loopback."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.probes import run_probe
from agent.responder.natserver import NatProbeServer
from agent.wire.natpacket import BIND, BOUND, NatMessage, NatWireError


def test_messages_round_trip() -> None:
    msg = NatMessage(BOUND, bytes(range(16)), b"192.0.2.7 40000")
    assert NatMessage.parse(bytes(msg)) == msg


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_the_parse_error(data: bytes) -> None:
    try:
        NatMessage.parse(data)
    except NatWireError:
        pass


def test_the_service_probes_a_token_only_a_bounded_number_of_times() -> None:
    async def main() -> tuple[int, int]:
        server = NatProbeServer("127.0.0.1", 0)
        await server.start()
        try:
            token = b"t" * 16
            server.handle(bytes(NatMessage(BIND, token)), ("127.0.0.1", 9), 0.0)
            for _ in range(10):
                server.handle(bytes(NatMessage(3, token)), ("127.0.0.1", 9), 1.0)
            return server.bindings[token][2], len(server._tasks)
        finally:
            await server.stop()

    triggers, _ = asyncio.run(main())
    assert triggers == 3


@pytest.mark.parametrize("port_off", [False, True])
def test_probe_reports_a_surviving_binding_on_loopback(port_off: bool) -> None:
    async def main() -> dict:
        server = NatProbeServer("127.0.0.1", 0)
        await server.start()
        port = server.address[1]
        if port_off:
            await server.stop()
        try:
            res = await run_probe("nat_binding", f"127.0.0.1:{port}", {"intervals_s": [0.2, 0.5]})
            return res.to_json_dict()
        finally:
            await server.stop()

    res = asyncio.run(main())
    if port_off:
        assert not res["success"]
        assert "no answer from the NAT-binding test service" in res["error"]["message"]
        return
    m = res["measurement"]
    assert res["success"], res["error"]
    assert [r["survived"] for r in m["results"]] == [True, True]
    assert m["survived_s"] == 0.5 and m["lost_s"] is None
    assert m["behind_nat"] is False and m["mapped_address"].startswith("127.0.0.1 ")
