"""The cardinality bounds at ingest, over a real uvicorn on SQLite and PostgreSQL: batches
shaped as the agent ships them (wire ProbeResult, to_json_dict) past the per-agent target
and per-partner series bounds are refused item by item with the bound named, results for
known series keep being stored, stale series stop counting, and a batch of known series
costs no query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from agent.wire.results import ProbeErrorInfo, ProbeResult
from tests.collector.conftest import Tenant, new_tenant

LIMITS = {"max_targets_per_agent": 5, "max_series_per_partner": 12}


def shipped(target: str, probe: str = "icmp", ago_s: float = 60.0) -> dict[str, Any]:
    """One result as the agent's shipper sends it."""
    started = datetime.now(UTC) - timedelta(seconds=ago_s)
    if probe == "icmp":
        m: dict[str, Any] | None = {
            "sent": 5, "received": 5, "loss_pct": 0.0, "jitter_ms": 0.4,
            "rtt_ms": {"min": 9.0, "avg": 10.0, "median": 10.0, "p95": 11.0, "max": 12.0},
        }  # fmt: skip
        return ProbeResult(
            probe=probe, target=target, started_at=started, duration_ms=50.0, success=True,
            measurement=m,
        ).to_json_dict()  # fmt: skip
    err = ProbeErrorInfo(error_class="ProbeTimeoutError", category="timeout", message="m")
    return ProbeResult(
        probe=probe, target=target, started_at=started, duration_ms=5.0, success=False,
        error=err,
    ).to_json_dict()  # fmt: skip


def ship(t: Tenant | httpx.Client, *items: dict[str, Any]) -> list[tuple[str, str | None]]:
    client = t.agent if isinstance(t, Tenant) else t
    r = client.post("/api/v1/results", json={"results": list(items)})
    assert r.status_code == 200, r.text
    return [(i["status"], i["error"]) for i in r.json()["items"]]


def second_agent(srv: Any, t: Tenant) -> httpx.Client:
    tok = t.partner.post(f"/api/v1/sites/{t.site_id}/tokens", json={}).json()["token"]
    enr = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": tok, "hostname": "box2"})
    assert enr.status_code == 201, enr.text
    key = enr.json()["agent_key"]
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_targets_per_agent_and_series_per_partner_are_bounded(make_store, serve):
    srv = serve(make_store(limits=LIMITS))
    t = new_tenant(srv, "acme")
    targets = [f"198.51.100.{i}" for i in range(8)]
    out = ship(t, *[shipped(x) for x in targets])
    assert [s for s, _ in out] == ["stored"] * 5 + ["rejected"] * 3
    assert out[5][1] == (
        "target '198.51.100.5': agent already reports 5 distinct targets "
        "(limits.max_targets_per_agent)"
    )
    # Known targets keep being stored, new ones are still refused, in the same batch.
    out = ship(t, shipped(targets[0]), shipped(targets[7]), shipped(targets[4]))
    assert [s for s, _ in out] == ["stored", "rejected", "stored"]
    # Another probe to a known target is a new series but no new target: stored.
    out = ship(t, *[shipped(x, probe="dns") for x in targets[:5]])
    assert [s for s, _ in out] == ["stored"] * 5  # 10 series for the partner now
    # A second agent of the partner: two more series, then the partner's bound.
    box2 = second_agent(srv, t)
    out = ship(box2, *[shipped(x) for x in targets[:4]])
    assert [s for s, _ in out] == ["stored", "stored", "rejected", "rejected"]
    assert out[2][1] == (
        "target '198.51.100.2', probe 'icmp': partner already has 12 series "
        "(limits.max_series_per_partner)"
    )
    assert ship(box2, shipped(targets[0]))[0][0] == "stored"
    # Another partner has bounds of its own.
    other = new_tenant(srv, "other")
    assert [s for s, _ in ship(other, *[shipped(x) for x in targets[:5]])] == ["stored"] * 5
    # What was refused is nowhere: not in results, not in latest.
    stored = {r["target"] for r in t.partner.get("/api/v1/results").json()}
    assert stored == set(targets[:5])
    with srv.store.read() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM latest").scalar()
    assert n == 10 + 2 + 5


def test_stale_series_stop_counting(make_store, serve):
    """A series not refreshed within metrics_stale_after_s is off /metrics and off the
    count: an agent whose targets changed reports the new ones."""
    srv = serve(make_store(limits=LIMITS, metrics_stale_after_s=3600))
    t = new_tenant(srv, "acme")
    old = [f"192.0.2.{i}" for i in range(5)]
    assert [s for s, _ in ship(t, *[shipped(x, ago_s=7200) for x in old])] == ["stored"] * 5
    new = [f"203.0.113.{i}" for i in range(5)]
    assert [s for s, _ in ship(t, *[shipped(x) for x in new])] == ["stored"] * 5
    out = ship(t, shipped(old[0]))  # the old target again: now one too many
    assert out[0][0] == "rejected" and "limits.max_targets_per_agent" in (out[0][1] or "")


def test_a_batch_of_known_series_costs_no_query(make_store, serve):
    store = make_store(limits=LIMITS)
    srv = serve(store)
    t = new_tenant(srv, "acme")
    targets = [f"198.51.100.{i}" for i in range(5)]
    seen: list[str] = []

    def count(_conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if "FROM latest" in statement and "SELECT" in statement.split("FROM latest")[0][-200:]:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        ship(t, *[shipped(x) for x in targets])
        first = len(seen)
        assert first >= 1  # new series: the agent's fresh series were read
        for _ in range(3):
            ship(t, *[shipped(x) for x in targets for _ in range(4)])
        assert len(seen) == first  # known series: answered from the cache
        ship(t, shipped("198.51.100.99"))  # new and refused: read again
        assert len(seen) > first
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)


def test_target_text_is_bounded(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    long, tab = shipped("long"), shipped("tab")
    long["target"], tab["target"] = "x" * 513, "a\tb"
    out = ship(t, long, tab, shipped("ok.example"))
    assert out[0] == ("rejected", "target: String should have at most 512 characters")
    assert out[1] == (
        "rejected",
        "target: target must not contain control characters (found '\\t')",
    )
    assert out[2] == ("stored", None)
