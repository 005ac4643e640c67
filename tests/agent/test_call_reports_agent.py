"""A real agent process with a `call_reports` section: a phone's RFC 6035 reports sent to it
by SIP PUBLISH go through its spool and shipper to the collector as `call_report` results,
once each however often the phone resends, and three in a row open `loss_back`."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli.stack import Stack, free_port_both, wait_for

pytestmark = pytest.mark.slow

RFC = (Path(__file__).resolve().parents[1] / "data" / "vqreport" / "rfc6035-4.7.3.txt").read_bytes()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _request(port: int, method: str, cseq: int, body: bytes = b"") -> str:
    head = [
        f"{method} sip:collector@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{method}-{cseq}",
        "From: <sip:alice@example.org>;tag=ph1",
        f"To: <sip:collector@127.0.0.1:{port}>",
        "Call-ID: reports-of-alice",
        f"CSeq: {cseq} {method}",
        "Event: vq-rtcpxr",
        "Content-Type: application/vq-rtcpxr",
        f"Content-Length: {len(body)}",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(("\r\n".join(head) + "\r\n\r\n").encode() + body, ("127.0.0.1", port))
        return s.recv(65535).decode().split("\r\n")[0]


def test_a_phones_reports_reach_the_collector_through_the_agent(stack: Stack) -> None:
    stack.start_collector()
    token = stack.create_tenancy()
    port = free_port_both()
    modules = {"host": {"probe": "host", "targets": ["local"], "interval_s": 60}}
    config = stack.write_agent_config(modules, call_reports={
        "port": port, "address": "127.0.0.1",
        "phones": [{"name": "alice-desk", "account": "sip:alice@example.org"}],
    })  # fmt: skip
    stack.enroll(config, token)
    stack.start_agent(config)

    def answers() -> bool:
        try:
            return _request(port, "OPTIONS", 1) == "SIP/2.0 200 OK"
        except OSError:
            return False

    wait_for("the agent's call-report listener", answers, 60.0)
    for cseq in (2, 2, 3, 4):  # the second is a resend of the first
        body = RFC.replace(b"6dg37f1890463", f"call-{cseq}".encode())
        assert _request(port, "PUBLISH", cseq, body) == "SIP/2.0 200 OK"

    def reports() -> list[dict]:
        got = [r for r in stack.results() if r["probe"] == "call_report"]
        return got if len(got) >= 3 else []

    got = wait_for("three call_report results at the collector", reports, 60.0)
    assert len(got) == 3
    assert {r["target"] for r in got} == {"sip:alice@example.org"}
    assert {r["module"] for r in got} == {"alice-desk"}
    assert sorted(r["measurement"]["call_id"] for r in got) == ["call-2", "call-3", "call-4"]
    assert all(r["measurement"]["back"]["loss_pct"] == 5.0 for r in got)
    tickets = wait_for("loss_back", lambda: [t for t in stack.tickets("open")
                                             if t["rule_id"] == "loss_back"], 30.0)  # fmt: skip
    assert tickets[0]["target"] == "sip:alice@example.org"
    assert tickets[0]["severity"] == "warning"  # 5.0 % is at, not above, the critical 5
