"""The history API on a real server: raw results for a short range, hourly roll-ups for a
longer one (the same figures either way), another partner's site is 404, a figure the
probe does not declare is refused naming those it does; the partner sees its retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from collector import rollups, tenants
from tests.collector.conftest import icmp, new_tenant


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_history_reads_raw_then_rollups_scoped_to_the_partner(make_store, serve):
    store = make_store()
    srv = serve(store, background=False)
    t = new_tenant(srv, "hist")
    other = new_tenant(srv, "hist-other")
    values = [12.5, 40.0, 7.25, 19.0, 33.0, 8.0]
    sent = [icmp(v) for v in values]
    assert t.post(*sent)["stored"] == len(values)
    now = time.time()
    url = f"/api/v1/sites/{t.site_id}/history"
    q = {"probe": "icmp", "field": "rtt_ms.avg", "direction": "", "since": _iso(now - 6 * 3600)}
    raw = t.partner.get(url, params=q)
    assert raw.status_code == 200, raw.text
    doc = raw.json()
    assert doc["resolution"] == "raw"
    [series] = doc["series"]
    assert [p["p50"] for p in series["points"]] == values
    assert {p["count"] for p in series["points"]} == {1}
    # The hours, once rolled, answer the same figures.
    rollups.roll_due(store, now + 2 * 3600)
    hourly = t.partner.get(url, params={**q, "resolution": "hour"}).json()
    assert hourly["resolution"] == "hour"
    points = hourly["series"][0]["points"]
    assert sum(p["count"] for p in points) == len(values)
    assert min(p["min"] for p in points) == min(values)
    assert max(p["max"] for p in points) == max(values)
    assert all(p["availability"] == 1.0 for p in points)
    # Long ranges read roll-ups on their own.
    ten_days = t.partner.get(url, params={**q, "since": _iso(now - 10 * 86400)}).json()
    assert ten_days["resolution"] == "hour"
    sixty = t.partner.get(url, params={**q, "since": _iso(now - 60 * 86400)}).json()
    assert sixty["resolution"] == "day"
    # Another partner's site is not found; bad figures and times are named.
    assert other.partner.get(url, params=q).status_code == 404
    bad = t.partner.get(url, params={**q, "field": "mos"})
    assert bad.status_code == 422
    assert "probe 'icmp' has no figure 'mos' without a direction" in bad.json()["detail"]
    assert "rtt_ms.avg" in bad.json()["detail"]
    naive = t.partner.get(url, params={**q, "since": "2024-01-01T00:00:00"})
    assert naive.status_code == 422 and "since must carry a timezone" in naive.json()["detail"]
    long_raw = t.partner.get(
        url, params={**q, "resolution": "raw", "since": _iso(now - 30 * 86400)}
    )
    assert long_raw.status_code == 422
    assert "resolution raw reads at most 7 days" in long_raw.json()["detail"]


def test_partner_sees_its_retention(make_store, serve):
    store = make_store(retention={"raw_days": 45})
    srv = serve(store, background=False)
    t = new_tenant(srv, "keeps")
    me = t.partner.get("/api/v1/partner").json()
    assert me["raw_retention_days"] is None and me["effective_raw_retention_days"] == 45
    with store.write() as c:
        tenants.set_partner_retention(c, t.partner_id, 90)
    me = t.partner.get("/api/v1/partner").json()
    assert me["raw_retention_days"] == 90 and me["effective_raw_retention_days"] == 90
    assert me["rollup_retention_days"] == 400
