"""HTTP API over a real uvicorn, on SQLite and PostgreSQL: enrollment, ingest, isolation."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import sqlalchemy as sa

from collector.db import head_revision
from collector.schema import enrollment_tokens
from tests.collector.conftest import icmp, new_tenant, result


def test_health_ready_and_openapi(make_store, serve):
    srv = serve(make_store(api_docs=True))
    assert httpx.get(f"{srv.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{srv.url}/readyz")
    assert ready.status_code == 200 and ready.json()["revision"] == head_revision()
    paths = httpx.get(f"{srv.url}/openapi.json").json()["paths"]
    for p in ("/api/v1/enroll", "/api/v1/results", "/api/v1/agent/jobs", "/api/v1/tickets"):
        assert p in paths
    assert httpx.get(f"{srv.url}/docs").status_code == 200


def test_enrollment_token_is_single_use_and_expires(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    tok = t.partner.post(f"/api/v1/sites/{t.site_id}/tokens", json={}).json()["token"]
    body = {"token": tok, "hostname": "box2"}
    first = httpx.post(f"{srv.url}/api/v1/enroll", json=body)
    assert first.status_code == 201
    assert set(first.json()) == {"agent_id", "agent_key", "site_id"}
    assert first.json()["site_id"] == t.site_id
    again = httpx.post(f"{srv.url}/api/v1/enroll", json=body)
    assert again.status_code == 401
    assert again.json()["detail"] == "enrollment token was already used"
    bad = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": "qse_nope", "hostname": "x"})
    assert bad.status_code == 401 and bad.json()["detail"] == "enrollment token is not valid"
    tok2 = t.partner.post(f"/api/v1/sites/{t.site_id}/tokens", json={"ttl_s": 60}).json()
    with srv.store.write() as c:  # age the token past its expiry
        c.execute(enrollment_tokens.update().values(expires_at=time.time() - 1))
    old = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": tok2["token"], "hostname": "x"})
    assert old.status_code == 401 and old.json()["detail"] == "enrollment token has expired"
    # Keys are stored hashed: the plain key appears nowhere in the database.
    key = first.json()["agent_key"]
    with srv.store.read() as c:
        hashes = c.exec_driver_sql("SELECT key_hash FROM agents").scalars().all()
    assert key not in hashes and all(len(h) == 64 for h in hashes)


def test_ingest_is_idempotent_by_result_id(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    batch = [icmp(10) for _ in range(5)]
    first = t.post(*batch)
    assert (first["stored"], first["duplicates"], first["rejected"]) == (5, 0, 0)
    assert [i["status"] for i in first["items"]] == ["stored"] * 5
    again = t.post(*batch, icmp(12))
    assert (again["stored"], again["duplicates"]) == (1, 5)
    assert [i["status"] for i in again["items"]] == ["duplicate"] * 5 + ["stored"]
    rows = t.partner.get("/api/v1/results", params={"limit": 100}).json()
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    # The same id twice inside one batch is stored once.
    one = icmp(5)
    twice = t.post(one, one)
    assert [i["status"] for i in twice["items"]] == ["stored", "duplicate"]


def test_bad_items_are_named_and_good_ones_stored(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    good = icmp(10)
    future = {**icmp(10), "schema_version": 99, "new_field": 1}
    no_tz = {**icmp(10), "started_at": "2030-01-01T00:00:00"}
    out = t.post(good, future, "not an object", no_tz, {**icmp(1), "bogus": True})
    assert (out["stored"], out["rejected"]) == (1, 4)
    items = out["items"]
    assert items[0]["status"] == "stored"
    assert items[1] == {
        "index": 1,
        "id": future["id"],
        "status": "rejected",
        "error": "schema_version 99 is not supported by this collector (known: 1, 2)",
    }
    assert items[2]["error"] == "item must be a JSON object"
    assert "started_at: Value error, started_at must carry a timezone" in items[3]["error"] or (
        "started_at must carry a timezone (UTC)" in items[3]["error"]
    )
    assert items[4]["error"] == "bogus: unknown field"


def test_gzip_and_size_limits(make_store, serve):
    srv = serve(make_store(limits={"max_body_bytes": 20_000, "max_batch_items": 10}))
    t = new_tenant(srv, "acme")
    batch = [icmp(10) for _ in range(5)]
    body = gzip.compress(json.dumps({"results": batch}).encode())
    r = t.agent.post(
        "/api/v1/results",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["stored"] == 5
    big = t.agent.post("/api/v1/results", json={"results": [icmp(1) for _ in range(11)]})
    assert big.status_code == 413
    assert big.json()["detail"] == (
        "batch has 11 results, the limit is 10 (limits.max_batch_items)"
    )
    bomb = gzip.compress(b'{"results": [' + b" " * 100_000 + b"]}")
    r = t.agent.post("/api/v1/results", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "larger than 20000 bytes" in r.json()["detail"]
    r = t.agent.post("/api/v1/results", content=b"{nope")
    assert r.status_code == 422 and r.json()["detail"].startswith("body is not valid JSON")
    r = t.agent.post("/api/v1/results", content=b"\x00\x01", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body is not valid gzip")
    r = httpx.post(f"{srv.url}/api/v1/results", json={"results": []})
    assert r.status_code == 401


def test_partner_a_gets_404_for_every_object_of_partner_b(make_store, serve):
    srv = serve(make_store())
    a = new_tenant(srv, "alpha")
    b = new_tenant(srv, "bravo", site={"contracted_down_bps": 10})
    for _ in range(3):  # give B a ticket, a job and results
        b.post(icmp(500))
    ping = {"probe": "icmp", "targets": ["192.0.2.1"]}
    ticket = b.partner.get("/api/v1/tickets").json()[0]["id"]
    job = b.partner.post(
        f"/api/v1/sites/{b.site_id}/jobs", json={"kind": "probe", "spec": ping}
    ).json()["id"]
    gets = [
        f"/api/v1/customers/{b.customer_id}",
        f"/api/v1/sites/{b.site_id}",
        f"/api/v1/agents/{b.agent_id}",
        f"/api/v1/tickets/{ticket}",
        f"/api/v1/jobs/{job}",
    ]
    for path in gets:
        assert b.partner.get(path).status_code == 200, path
        r = a.partner.get(path)
        assert r.status_code == 404, path
        assert r.json()["detail"].endswith("not found")
    writes = [
        ("PATCH", f"/api/v1/customers/{b.customer_id}", {"notes": "x"}),
        ("DELETE", f"/api/v1/customers/{b.customer_id}", None),
        ("PATCH", f"/api/v1/sites/{b.site_id}", {"address": "x"}),
        ("POST", f"/api/v1/sites/{b.site_id}/tokens", {}),
        ("POST", f"/api/v1/sites/{b.site_id}/jobs", {"kind": "probe", "spec": ping}),
        ("POST", f"/api/v1/tickets/{ticket}/ack", {}),
        ("POST", f"/api/v1/tickets/{ticket}/resolve", {}),
        ("POST", f"/api/v1/tickets/{ticket}/comments", {"message": "hi"}),
        ("POST", "/api/v1/sites", {"customer_id": b.customer_id, "name": "sneaky"}),
        ("PUT", "/api/v1/rules/overrides", {"site_id": b.site_id, "overrides": {}}),
    ]
    for method, path, body in writes:
        r = a.partner.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    # Lists and filters never show B's objects.
    assert [c["id"] for c in a.partner.get("/api/v1/customers").json()] == [a.customer_id]
    assert [s["id"] for s in a.partner.get("/api/v1/sites").json()] == [a.site_id]
    assert [x["id"] for x in a.partner.get("/api/v1/agents").json()] == [a.agent_id]
    assert a.partner.get("/api/v1/results", params={"site_id": b.site_id}).json() == []
    assert a.partner.get("/api/v1/tickets", params={"site_id": b.site_id}).json() == []
    assert a.partner.get("/api/v1/rules", params={"site_id": b.site_id}).status_code == 404
    # B's objects are untouched.
    assert b.partner.get(f"/api/v1/tickets/{ticket}").json()["state"] == "open"
    # An agent can only move jobs of its own site.
    r = a.agent.post(f"/api/v1/agent/jobs/{job}/status", json={"state": "running"})
    assert r.status_code == 404


def test_customers_sites_and_agents_crud(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    site = {
        "customer_id": t.customer_id,
        "name": "branch",
        "address": "1 Main St",
        "contracted_down_bps": 100_000_000,
        "contracted_up_bps": 20_000_000,
        "firewall_make": "Fortinet",
        "firewall_model": "FG-60F",
        "sip_server": "sip.example.net",
        "sip_domain": "pbx.example.net",
        "contacts": [{"name": "Ann", "role": "IT", "phone": "+1555", "email": "a@x"}],
        "call_info": {"trunk": "primary"},
    }
    s = t.partner.post("/api/v1/sites", json=site).json()
    for k, v in site.items():
        assert s[k] == v, k
    p = t.partner.patch(f"/api/v1/sites/{s['id']}", json={"contracted_up_bps": 5}).json()
    assert p["contracted_up_bps"] == 5 and p["address"] == "1 Main St"
    r = t.partner.post("/api/v1/sites", json={**site, "firewall": "x"})
    assert r.status_code == 422
    assert t.partner.delete(f"/api/v1/customers/{t.customer_id}").status_code == 409
    c2 = t.partner.post("/api/v1/customers", json={"name": "tmp"}).json()
    assert t.partner.delete(f"/api/v1/customers/{c2['id']}").status_code == 204
    assert t.partner.get(f"/api/v1/customers/{c2['id']}").status_code == 404
    agents = t.partner.get("/api/v1/agents").json()
    assert agents[0]["hostname"] == "acme-box" and agents[0]["last_seen_at"]
    assert "key_hash" not in agents[0]


def test_results_query_filters(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    t.post(icmp(10), result("dns", measurement={"resolve_ms": 3.0}), icmp(11))
    assert len(t.partner.get("/api/v1/results", params={"probe": "icmp"}).json()) == 2
    rows = t.partner.get("/api/v1/results", params={"limit": 1}).json()
    assert len(rows) == 1 and rows[0]["measurement"]["rtt_ms"]["avg"] == 11
    r = t.partner.get("/api/v1/results", params={"since": "2000-01-01T00:00:00"})
    assert r.status_code == 422 and "timezone" in r.json()["detail"]


def test_unknown_keys_and_bearer_errors(make_store, serve):
    srv = serve(make_store())
    r = httpx.get(f"{srv.url}/api/v1/customers")
    assert r.status_code == 401
    assert r.json()["detail"] == "missing 'Authorization: Bearer <key>' header"
    r = httpx.get(f"{srv.url}/api/v1/customers", headers={"Authorization": "Bearer qsp_x"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown partner key"
    r = httpx.post(
        f"{srv.url}/api/v1/results",
        json={"results": []},
        headers={"Authorization": "Bearer qsa_x"},
    )
    assert r.status_code == 401 and r.json()["detail"] == "unknown agent key"


def test_stored_rows_count_matches(make_store, serve):
    store = make_store()
    srv = serve(store)
    t = new_tenant(srv, "acme")
    t.post(*[icmp(1) for _ in range(20)])
    with store.read() as c:
        assert c.execute(sa.text("SELECT count(*) FROM results")).scalar() == 20
        assert c.execute(sa.text("SELECT count(*) FROM latest")).scalar() == 1
