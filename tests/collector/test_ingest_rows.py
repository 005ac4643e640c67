"""Ingest keeps `latest` and stored values exactly, on SQLite and PostgreSQL: newest wins,
the first of equal times in batch order, an older or duplicate result never overwrites."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from collector.schema import latest, results
from tests.collector.conftest import icmp, new_tenant, result


def _latest(store, target):  # type: ignore[no-untyped-def]
    with store.read() as c:
        rows = c.execute(sa.select(latest).where(latest.c.target == target)).all()
    assert len(rows) == 1, rows
    return rows[0]


def test_latest_and_stored_values(make_store, serve):
    store = make_store()
    srv = serve(store)
    t = new_tenant(srv, "rows")
    older, newer = icmp(10, target="t1"), icmp(20, target="t1")
    tie_a = icmp(30, target="t2")
    tie_b = icmp(40, target="t2", started_at=tie_a["started_at"])
    out = t.post(newer, older, tie_a, tie_b)
    assert out["stored"] == 4
    assert _latest(store, "t1").result_id == newer["id"]
    assert _latest(store, "t2").result_id == tie_a["id"]  # first of equal times
    # An older result arriving later does not overwrite; a newer one does.
    day_before = datetime.fromisoformat(older["started_at"]) - timedelta(days=1)
    t.post(icmp(5, target="t1", started_at=day_before.isoformat()))
    assert _latest(store, "t1").result_id == newer["id"]
    newest = icmp(50, target="t1")
    t.post(newest)
    row = _latest(store, "t1")
    assert row.result_id == newest["id"] and row.measurement["rtt_ms"]["avg"] == 50
    # A duplicate of an old result changes nothing.
    again = t.post(older)
    assert again["duplicates"] == 1 and _latest(store, "t1").result_id == newest["id"]
    # Values round-trip: nulls stay SQL NULL, JSON columns keep their content, floats exact.
    failed = result(
        "icmp",
        target="t3",
        success=False,
        duration_ms=0.1 + 0.2,
        error={"class": "ProbeTimeout", "category": "timeout", "message": "no reply"},
        tags={"room": "a'b\"c\\d"},
    )
    assert t.post(failed)["stored"] == 1
    with store.read() as c:
        row = c.execute(sa.select(results).where(results.c.id == failed["id"])).one()
        nulls = c.execute(
            sa.select(sa.func.count()).where(
                results.c.id == failed["id"], results.c.measurement.is_(None)
            )
        ).scalar()
    assert row.duration_ms == 0.1 + 0.2 and row.success is False
    assert row.error["class"] == "ProbeTimeout" and row.tags == {"room": "a'b\"c\\d"}
    assert nulls == 1 and row.job_id is None
    # An infinite duration (it used to be stored) is refused by path; the rest is stored.
    inf = icmp(1, target="t4", duration_ms=math.inf)
    ok = icmp(1, target="t4")
    r = t.agent.post("/api/v1/results", content=json.dumps({"results": [inf, ok]}))
    assert r.status_code == 200, r.text
    assert [i["status"] for i in r.json()["items"]] == ["rejected", "stored"]
    assert r.json()["items"][0]["error"] == (
        "duration_ms: NaN and infinite numbers are not JSON; send null"
    )
    assert _latest(store, "t4").result_id == ok["id"]


def test_pooled_connection_killed_by_server_is_replaced(make_store, monkeypatch):
    store = make_store()
    if store.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no server to drop the connection")
    import collector.db

    monkeypatch.setattr(collector.db, "PING_AFTER_IDLE_S", 0.0)
    with store.read() as c:
        pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    killer = sa.create_engine(store.engine.url.render_as_string(hide_password=False))
    try:
        with killer.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    finally:
        killer.dispose()
    with store.read() as c:  # the dead pooled connection is pinged, dropped, replaced
        assert c.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid


def test_measurement_values_exact_on_both_parsers(make_store, serve):
    """A plain body takes the fast JSON path, one with a NaN/Infinity literal Python's;
    either way floats, big integers and non-ASCII text come back exactly, and a NaN or
    infinity inside a measurement is refused by name while the rest of the batch is stored."""
    store = make_store()
    srv = serve(store)
    t = new_tenant(srv, "exact")
    values = {"f": 0.1 + 0.2, "tiny": 5e-324, "big": 2**53 + 1, "neg": -(2**63), "s": "é☎\u2028"}
    fast = result("host", target="f1", measurement=dict(values))
    assert t.post(fast)["stored"] == 1
    slow_ok = result("host", target="f2", measurement=dict(values))  # slow: NaN in the body
    slow_bad = result(
        "host", target="f3", measurement={"nic": [{"drops": 1.0}, {"drops": math.nan}]}
    )
    body = json.dumps({"results": [slow_bad, slow_ok]})
    r = t.agent.post("/api/v1/results", content=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stored"] == 1 and out["rejected"] == 1, out
    assert out["items"][0]["error"] == (
        "measurement.nic.1.drops: NaN and infinite numbers are not JSON; send null"
    )
    with store.read() as c:
        got = dict(c.execute(sa.select(results.c.id, results.c.measurement)).all())
    assert got[fast["id"]] == values and got[slow_ok["id"]] == values
    assert slow_bad["id"] not in got
