"""Limits on what partners and agents may send, over a real uvicorn on SQLite and PostgreSQL:
body size on every route (declared and chunked), field and list lengths on the partner API,
each answered 413/422 with a detail naming the limit or the field, nothing stored."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.collector.conftest import icmp, new_tenant

MB = 1024 * 1024


def _chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    """A JSON customer body of `total` bytes, sent chunked (no Content-Length)."""
    head, tail = b'{"name": "big", "notes": "', b'"}'
    yield head
    left = total - len(head) - len(tail)
    while left > 0:
        n = min(size, left)
        yield b"x" * n
        left -= n
    yield tail


def test_a_large_body_is_refused_on_partner_routes_declared_or_chunked(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    # Declared: 10 MB of customer notes were stored before; now 413 before the body is read.
    r = t.partner.post("/api/v1/customers", json={"name": "big", "notes": "x" * (10 * MB)})
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "request body is larger than 65536 bytes (limits.max_request_bytes)"
    )
    # Chunked (no Content-Length): counted as it streams, cut at the limit.
    r = t.partner.post(
        "/api/v1/customers", content=_chunks(2 * MB), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "limits.max_request_bytes" in r.json()["detail"]
    names = [c["name"] for c in t.partner.get("/api/v1/customers").json()]
    assert "big" not in names
    # A ticket comment (150 MB were stored before) and the web forms get the same answer.
    r = t.partner.post("/api/v1/tickets/nope/comments", json={"message": "x" * (2 * MB)})
    assert r.status_code == 413
    r = httpx.post(f"{srv.url}/ui/login", content=b"key=" + b"x" * (2 * MB))
    assert r.status_code == 413
    # Under the limit nothing changes.
    ok = t.partner.post("/api/v1/customers", json={"name": "small", "notes": "x" * 1000})
    assert ok.status_code == 201


def test_agent_routes_keep_the_larger_ingest_limit(make_store, serve):
    srv = serve(make_store(limits={"max_body_bytes": 4 * MB}))
    t = new_tenant(srv, "acme")
    batch = [icmp(10, target=f"192.0.2.{i % 8}") for i in range(400)]  # about 120 KB
    assert len(json.dumps({"results": batch})) > 64 * 1024
    assert t.post(*batch)["stored"] == 400
    r = t.agent.post("/api/v1/results", content=b"x" * (5 * MB))
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "request body is larger than 4194304 bytes (limits.max_body_bytes)"
    )


def test_the_limit_is_configurable(make_store, serve):
    srv = serve(make_store(limits={"max_request_bytes": 2048}))
    t = new_tenant(srv, "acme")
    r = t.partner.post("/api/v1/customers", json={"name": "n", "notes": "x" * 3000})
    assert r.status_code == 413
    assert r.json()["detail"] == "request body is larger than 2048 bytes (limits.max_request_bytes)"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_declared_length_over_the_limit_is_answered_without_reading_the_body(make_store, serve):
    """The collector answers 413 as soon as it has the headers: a client that declared
    100 MB and sent nothing more gets its answer, the server reads none of it."""
    srv = serve(make_store())
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(
            b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = s.recv(4096)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 413 ")
