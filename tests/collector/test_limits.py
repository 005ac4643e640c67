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
from tests.collector.peers import wait_for

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
    r = t.agent.post("/api/v1/results", content=_chunks(5 * MB, 256 * 1024))  # chunked
    assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["detail"]
    # Refused before the key is looked at: a partner key on the agents' route gets the 413.
    r = t.partner.post("/api/v1/results", content=b"x" * (5 * MB))
    assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["detail"]
    assert srv.state.stats.ingest_errors["413"] == 3  # counted as ingest errors
    # The job status route (readiness reports) has the agents' limit too, chunked or not.
    r = t.agent.post("/api/v1/agent/jobs/nope/status", content=b"x" * (5 * MB))
    assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["detail"]
    r = t.agent.post("/api/v1/agent/jobs/nope/status", content=_chunks(5 * MB, 256 * 1024))
    assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["detail"]


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


def _loc(r: httpx.Response) -> list[list[object]]:
    assert r.status_code == 422, r.text
    return [e["loc"] for e in r.json()["detail"]]


def test_free_text_fields_and_lists_are_bounded_with_a_422_naming_the_field(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    p = t.partner
    # Customer notes: 10 MB were stored before; now 10,000 characters at most.
    assert _loc(p.post("/api/v1/customers", json={"name": "n", "notes": "x" * 10_001})) == [
        ["body", "notes"]
    ]
    assert p.post("/api/v1/customers", json={"name": "n", "notes": "x" * 10_000}).status_code == 201
    site = {"customer_id": t.customer_id, "name": "s"}
    contact = {"name": "Ann", "phone": "+1555"}
    cases: list[tuple[dict[str, object], list[object]]] = [
        ({"address": "a" * 501}, ["body", "address"]),
        ({"firewall_model": "f" * 201}, ["body", "firewall_model"]),
        ({"sip_domain": "d" * 256}, ["body", "sip_domain"]),
        ({"contacts": [contact] * 21}, ["body", "contacts"]),
        ({"contacts": [{"phone": "1" * 65}]}, ["body", "contacts", 0, "phone"]),
        ({"contacts": [{"pager": "p" * 501}]}, ["body", "contacts", 0]),
        ({"call_info": {f"k{i}": "v" for i in range(33)}}, ["body", "call_info"]),
        ({"call_info": {"trunk": "t" * 4001}}, ["body", "call_info"]),
        ({"call_info": {"k" * 65: "v"}}, ["body", "call_info", "k" * 65, "[key]"]),
        ({"call_info": {"nested": {"a": 1}}}, ["body", "call_info"]),
    ]
    for extra, loc in cases:
        assert loc in _loc(p.post("/api/v1/sites", json={**site, **extra})), extra
        assert loc in _loc(p.patch(f"/api/v1/sites/{t.site_id}", json=extra)), extra
    big_info = {f"k{i}": "v" * 1000 for i in range(17)}  # every value fits, 17 KB in all
    r = p.patch(f"/api/v1/sites/{t.site_id}", json={"call_info": big_info})
    assert _loc(r) == [["body", "call_info"]]
    assert "the limit is 16384" in r.json()["detail"][0]["msg"]
    ok = {"contacts": [{**contact, "pager": "p1"}], "call_info": {"trunk": "primary", "n": 2}}
    assert p.patch(f"/api/v1/sites/{t.site_id}", json=ok).status_code == 200
    # Ticket comments and notes (150 MB were stored before): 10,000 characters. (Of a ticket
    # that exists: another partner's, or none, is a 404 before the body is read.)
    assert p.post("/api/v1/tickets/x/comments", json={"message": "m"}).status_code == 404
    t.post(*[icmp(300, loss=50) for _ in range(5)])
    tid = wait_for(lambda: p.get("/api/v1/tickets").json(), 30, "a ticket")[0]["id"]
    assert _loc(p.post(f"/api/v1/tickets/{tid}/comments", json={"message": "m" * 10_001})) == [
        ["body", "message"]
    ]
    assert _loc(p.post(f"/api/v1/tickets/{tid}/ack", json={"message": "m" * 10_001})) == [
        ["body", "message"]
    ]
    # Job spec and rule overrides: by size and count.
    spec = {"probe": "icmp", "targets": ["192.0.2.1"], "options": {"pad": "x" * 40_000}}
    r = p.post(f"/api/v1/sites/{t.site_id}/jobs", json={"kind": "probe", "spec": spec})
    assert _loc(r) == [["body", "spec"]] and "the limit is 32768" in r.text
    many = {f"rule{i}": {"enabled": False} for i in range(257)}
    assert _loc(p.put("/api/v1/rules/overrides", json={"overrides": many})) == [
        ["body", "overrides"]
    ]
    # Another partner's site with a valid body is still a 404, not a 422.
    other = new_tenant(srv, "other")
    assert other.partner.patch(f"/api/v1/sites/{t.site_id}", json=ok).status_code == 404


def test_the_openapi_schema_documents_the_bounds(make_store, serve):
    srv = serve(make_store())
    schemas = srv.app.openapi()["components"]["schemas"]
    assert schemas["CustomerIn"]["properties"]["notes"]["maxLength"] == 10_000
    assert schemas["CommentIn"]["properties"]["message"]["maxLength"] == 10_000
    contacts = schemas["SiteIn"]["properties"]["contacts"]["anyOf"][0]
    assert contacts["maxItems"] == 20
    call_info = schemas["SiteIn"]["properties"]["call_info"]["anyOf"][0]
    assert call_info["maxProperties"] == 32 and "16 KiB" in call_info["description"]
    assert schemas["Contact"]["properties"]["phone"]["maxLength"] == 64
    assert schemas["CallInfo"]["properties"]["notes"]["anyOf"][0]["maxLength"] == 4000


def test_a_patch_sending_null_for_a_required_column_is_a_422(make_store, serve):
    """PATCH {"name": null} reached the database (NOT NULL constraint: a 500); now the field
    is named. The contracted speeds alone may be cleared with null."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    site = f"/api/v1/sites/{t.site_id}"
    for field in ("name", "address", "sip_server", "contacts", "call_info", "customer_id"):
        assert _loc(t.partner.patch(site, json={field: None})) == [["body", field]], field
    for field in ("name", "notes"):
        r = t.partner.patch(f"/api/v1/customers/{t.customer_id}", json={field: None})
        assert _loc(r) == [["body", field]], field
    r = t.partner.patch(site, json={"contracted_down_bps": 5_000_000})
    assert r.status_code == 200 and r.json()["contracted_down_bps"] == 5_000_000
    r = t.partner.patch(site, json={"contracted_down_bps": None})
    assert r.status_code == 200 and r.json()["contracted_down_bps"] is None
