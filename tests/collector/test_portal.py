"""The portal on a real server, on SQLite and PostgreSQL (one server per backend for the
module): SLA targets and clocks, the bad-call window graded by the site's rules and attached
to tickets, maintenance windows holding back tickets and notifications, the roll-ups, the
pages; every route answers another partner 404."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from collector import rollups
from collector.config import CollectorConfig
from collector.rules import evaluate
from collector.schema import outbox, tickets
from collector.store import Store
from tests.collector.conftest import (
    SCRAPE_TOKEN,
    LiveServer,
    Tenant,
    icmp,
    new_tenant,
    result,
    web_login,
)
from tests.collector.pg import PgCluster

RULES = {"rtt": {"trip_after": 2, "clear_after": 1}}
HOOK = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret"}


class Clock:
    """The app's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('portal')}/c.sqlite3"
        admin = None
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        name = "t_" + uuid.uuid4().hex[:12]
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE qs_template")
        url = cluster.url(name)
    cfg = {"metrics": {"token": SCRAPE_TOKEN}, "rules": RULES,
           "notifications": [{**HOOK, "name": "hook", "partners": ["acme"]}]}  # fmt: skip
    store = Store(CollectorConfig(db=url, **cfg))
    store.migrate()
    clock = Clock()
    srv = LiveServer(store, background=False, clock=clock).start()
    t = new_tenant(srv, "acme")
    other = new_tenant(srv, "rival")
    try:
        yield {"srv": srv, "t": t, "other": other, "clock": clock, "store": store}
    finally:
        srv.stop()
        store.dispose()
        if admin is not None:
            admin.dispose()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _hidden(html: str, action: str) -> dict[str, str]:
    m = re.search(rf'<form[^>]*method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>',
                  html, re.S)  # fmt: skip
    assert m, f"no form posting to {action}"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', m.group(1)))


def login(srv: LiveServer, t: Tenant) -> httpx.Client:
    """A technician of the tenant's partner, logged in on the pages."""
    key = str(t.partner.headers["Authorization"]).removeprefix("Bearer ")
    return web_login(srv, key, "technician")


def _outbox_rows(store: Store) -> int:
    with store.read() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one())


def test_bad_call_window_grades_with_the_site_rules_and_attaches_to_tickets(env):
    t, other = env["t"], env["other"]
    rtts = [20.0, 35.0, 180.0, 420.0, 25.0, 160.0, 30.0]
    sent = [icmp(v, target="192.0.2.77") for v in rtts]
    assert t.post(*sent)["stored"] == len(sent)
    rule = next(r for r in t.partner.get("/api/v1/rules").json()["rules"] if r["id"] == "rtt")
    mid = _ts(sent[3]["started_at"])
    url = f"/api/v1/sites/{t.site_id}/badcall"
    r = t.partner.get(url, params={"at": _iso(mid), "before_min": 1, "after_min": 1})
    assert r.status_code == 200, r.text
    win = r.json()
    mine = {x["id"]: x for x in win["results"]}
    for s, v in zip(sent, rtts, strict=True):
        got = mine[s["id"]]
        want, _ = evaluate(_rule(rule), True, s["measurement"])
        [check] = [c for c in got["checks"] if c["rule"] == "rtt"]
        assert (check["value"], check["level"], got["worst"] == want) == (v, want, True)
    assert win["counts"]["critical"] >= 1 and win["counts"]["warning"] >= 2
    # the time is explicit; windows are bounded; another partner's site is not found
    naive = t.partner.get(url, params={"at": "2026-01-01T10:00:00"})
    assert naive.status_code == 422 and "at must carry a timezone" in naive.text
    big = t.partner.get(url, params={"at": _iso(mid), "before_min": 10_000})
    assert big.status_code == 422
    far = t.partner.get(url, params={"at": "9999-12-31T23:59:59+14:00", "after_min": 720})
    assert far.status_code == 422 and "between the years 2000 and 2100" in far.text
    assert other.partner.get(url, params={"at": _iso(mid)}).status_code == 404
    # attach: a new ticket, then the same window to it again as an event
    body = {"at": _iso(mid), "before_min": 1, "after_min": 1}
    assert other.partner.post(url + "/attach", json=body).status_code == 404
    new = t.partner.post(url + "/attach", json=body)
    assert new.status_code == 201, new.text
    tid = new.json()["id"]
    ticket = t.partner.get(f"/api/v1/tickets/{tid}").json()
    [(key, kept)] = ticket["evidence"]["bad_calls"].items()
    assert _ts(key) == mid
    # (the window may hold the module's other tests' results too: only ours are compared)
    ours = {s["id"] for s in sent}
    assert {x["id"] for x in kept["results"] if x["worst"] != "ok" and x["id"] in ours} == {
        s["id"] for s, v in zip(sent, rtts, strict=True) if v > rule["warning"]
    }
    assert ticket["severity"] == "critical"
    again = t.partner.post(url + "/attach", json={**body, "ticket_id": tid})
    assert again.status_code == 201 and again.json()["id"] == tid
    assert [e["kind"] for e in again.json()["events"]][-1] == "bad_call"
    theirs = other.partner.post(
        f"/api/v1/sites/{other.site_id}/badcall/attach", json={**body, "ticket_id": tid}
    )
    assert theirs.status_code == 404
    # the page shows the window marked, and its attach form opens the ticket page
    ui = login(env["srv"], t)
    local = datetime.fromtimestamp(mid, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    page = ui.get(f"/ui/sites/{t.site_id}/badcall", params={"at": local, "tz": "UTC",
                                                             "window": "1"})  # fmt: skip
    assert page.status_code == 200
    rows = re.findall(r'data-worst="(\w+)" data-id="([^"]+)"', page.text)
    marked = dict(rows)
    flagged = {rid for worst, rid in rows if worst != "ok" and rid in ours}
    assert marked and flagged == {s["id"] for s, v in zip(sent, rtts, strict=True)
                                  if v > rule["warning"]}  # fmt: skip
    action = f"/ui/sites/{t.site_id}/badcall"
    form = _hidden(page.text, action)
    posted = ui.post(action, data={**form, "ticket": tid})
    assert posted.status_code == 303 and posted.headers["location"] == f"/ui/tickets/{tid}"
    shown = ui.get(f"/ui/tickets/{tid}").text
    assert "Bad call at" in shown and 'id="sla"' in shown
    bad_tz = ui.get(action, params={"at": local, "tz": "Nowhere/City", "window": "30"})
    assert bad_tz.status_code == 400 and "unknown timezone" in bad_tz.text
    assert login(env["srv"], other).get(action, params={"at": local}).status_code == 404


def _rule(d: dict[str, Any]) -> Any:
    from collector.rules import Rule

    return Rule.model_validate(d)


def test_maintenance_window_holds_back_tickets_and_notifications(env):
    t, other, store, srv = env["t"], env["other"], env["store"], env["srv"]
    now = time.time()
    site_win = {"scope": "site", "scope_id": t.site_id, "reason": "line swap",
                "schedule": {"kind": "once", "starts_at": _iso(now - 600),
                             "ends_at": _iso(now + 3600)}}  # fmt: skip
    assert other.partner.post("/api/v1/maintenance", json=site_win).status_code == 404
    made = t.partner.post("/api/v1/maintenance", json=site_win)
    assert made.status_code == 201, made.text
    w = made.json()
    assert w["active"] is True
    listed = t.partner.get("/api/v1/maintenance", params={"site_id": t.site_id}).json()
    assert [x["id"] for x in listed] == [w["id"]]
    assert other.partner.get("/api/v1/maintenance").json() == []
    before = _outbox_rows(store)
    target = "198.51.100.9"
    t.post(*[icmp(400.0, target=target) for _ in range(4)])
    with store.read() as c:
        opened = c.execute(sa.select(tickets.c.id).where(tickets.c.target == target)).all()
    assert opened == [] and _outbox_rows(store) == before
    events = t.partner.get(f"/api/v1/sites/{t.site_id}/call_info/events").json()
    held = [e for e in events if e["kind"] == "suppressed_in_maintenance"]
    # 4 bad results trip twice (trip_after 2); the second trip of the same rule and target
    # within 15 minutes is not kept again
    assert len(held) == 1 and held[0]["data"]["maintenance"]["id"] == w["id"]
    assert len(held[0]["data"]["evidence"]["results"]) == RULES["rtt"]["trip_after"]
    assert "maintenance_created" in {e["kind"] for e in events}
    # the site page says so; the window can be deleted (recorded), then the next trip opens
    ui = login(srv, t)
    assert "in maintenance now" in ui.get(f"/ui/sites/{t.site_id}").text
    assert other.partner.delete(f"/api/v1/maintenance/{w['id']}").status_code == 404
    assert t.partner.delete(f"/api/v1/maintenance/{w['id']}").status_code == 204
    t.post(*[icmp(400.0, target=target) for _ in range(2)])
    with store.read() as c:
        opened = c.execute(sa.select(tickets.c.id).where(tickets.c.target == target)).all()
    assert len(opened) == 1 and _outbox_rows(store) > before
    kinds = {e["kind"] for e in t.partner.get(f"/api/v1/sites/{t.site_id}/call_info/events")
             .json()}  # fmt: skip
    assert "maintenance_deleted" in kinds
    # bad schedules are named; the web form creates a weekly window in a timezone
    bad = t.partner.post("/api/v1/maintenance", json={**site_win, "schedule": {
        "kind": "weekly", "weekday": "monday", "start": "25:00", "duration_min": 60,
        "timezone": "Europe/Berlin"}})  # fmt: skip
    assert bad.status_code == 422 and "start" in bad.text
    page = ui.get("/ui/maintenance")
    form = _hidden(page.text, "/ui/maintenance")
    r = ui.post("/ui/maintenance", data={**form, "target": f"customer:{t.customer_id}",
                                          "kind": "weekly", "weekday": "sunday",
                                          "start": "02:30", "duration_min": "90",
                                          "tz": "Europe/Berlin"})  # fmt: skip
    assert r.status_code == 303 and "created" in r.headers["location"]
    assert "every Sunday 02:30 Europe/Berlin for 90 min" in ui.get("/ui/maintenance").text
    [weekly] = t.partner.get("/api/v1/maintenance").json()
    trail = t.partner.get(f"/api/v1/sites/{t.site_id}/call_info/events").json()
    assert trail[0]["kind"] == "maintenance_created"
    assert trail[0]["actor"].startswith("user:technician-")  # the person logged in
    log = t.partner.get("/api/v1/audit").json()  # and the partner's audit log names them
    assert any(e["action"] == "maintenance.created" and e["actor"] == trail[0]["actor"]
               for e in log)  # fmt: skip
    assert trail[0]["data"]["id"] == weekly["id"]  # a customer's window, on its sites' trail
    assert weekly["scope"] == "customer" and weekly["schedule"]["timezone"] == "Europe/Berlin"
    assert t.partner.delete(f"/api/v1/maintenance/{weekly['id']}").status_code == 204


def test_sla_targets_clocks_and_rollups(env):
    t, other, clock = env["t"], env["other"], env["clock"]
    defaults = t.partner.get("/api/v1/sla/targets").json()
    assert defaults["targets"] == defaults["defaults"]
    put = t.partner.put("/api/v1/sla/targets", json={"targets": {
        "critical": {"response_s": 60, "resolution_s": 120},
        "warning": {"response_s": 600, "resolution_s": 1200}}})  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json()["targets"]["critical"] == {"response_s": 60.0, "resolution_s": 120.0}
    assert other.partner.get("/api/v1/sla/targets").json()["targets"] == defaults["defaults"]
    wrong = t.partner.put("/api/v1/sla/targets", json={"targets": {
        "critical": {"response_s": 600, "resolution_s": 60}}})  # fmt: skip
    assert wrong.status_code == 422 and "resolution_s must not be shorter" in wrong.text
    # a ticket of this site (from the tests above, or one opened here)
    t.post(*[icmp(900.0, target="203.0.113.5") for _ in range(2)])
    roll = t.partner.get("/api/v1/rollup").json()
    [site] = roll["sites"]
    assert site["id"] == t.site_id and site["state"] == "critical" and site["open_tickets"] >= 1
    assert roll["tickets_out_of_sla"] == []
    clock.offset = 3600.0  # an hour later, nobody acknowledged
    try:
        late = t.partner.get("/api/v1/rollup").json()
        assert {x["id"] for x in late["tickets_out_of_sla"]} == {
            x["id"] for x in late["open_tickets"]
        }
        crit = next(x for x in late["tickets_out_of_sla"] if x["severity"] == "critical")
        assert crit["sla"]["response"]["state"] == "breached"
        assert crit["sla"]["response"]["elapsed_s"] >= 3600
        assert late["sites"][0]["out_of_sla"] == late["sites"][0]["open_tickets"]
        cust = t.partner.get(f"/api/v1/customers/{t.customer_id}/rollup")
        assert cust.status_code == 200 and cust.json()["customer"] == "acme-customer"
        assert other.partner.get(f"/api/v1/customers/{t.customer_id}/rollup").status_code == 404
        assert [s["id"] for s in other.partner.get("/api/v1/rollup").json()["sites"]] == [
            other.site_id
        ]
        ui = login(env["srv"], t)
        home = ui.get("/ui/home").text
        assert crit["id"] in home.split('id="out-of-sla"')[1].split("</table>")[0]
        assert "out of SLA" in ui.get("/ui/tickets").text
        assert "out of SLA" in ui.get(f"/ui/sites/{t.site_id}").text
        assert "breached by" in ui.get(f"/ui/tickets/{crit['id']}").text
        assert ui.get(f"/ui/customers/{t.customer_id}").status_code == 200
        assert login(env["srv"], other).get(f"/ui/customers/{t.customer_id}").status_code == 404
    finally:
        clock.offset = 0.0


def test_site_page_shows_current_state_and_charts_per_direction(env):
    t, srv = env["t"], env["srv"]
    voice = {"out": _dir(4.3, 0.0, 3.0), "back": _dir(3.2, 6.0, 45.0),
             "rtt_ms": {"min": 20.0, "avg": 24.0, "median": 24.0, "p95": 30.0, "max": 40.0},
             "loss_pct": 3.0, "sent": 500, "received": 485}  # fmt: skip
    # the ping rows too: under xdist this test may run without the module's earlier tests
    sent = [result("udp", "rsp.example", measurement=voice), icmp(30.0, target="192.0.2.78")]
    r = t.agent.post("/api/v1/results", json={"results": sent})
    assert r.status_code == 200, r.text
    ui = login(srv, t)
    page = ui.get(f"/ui/sites/{t.site_id}")
    assert page.status_code == 200
    html = page.text
    assert html.count("<svg") >= 7  # udp rtt, jitter, loss, mos; icmp rtt, jitter, loss
    assert 'aria-labelledby="chart0-t chart0-d"' in html and "<desc" in html
    [mos] = [f for f in html.split("<figure") if "MOS, udp to rsp.example" in f]
    assert '<th scope="row">out</th>' in mos and '<th scope="row">back</th>' in mos
    assert ">4.3<" in mos and ">3.2<" in mos  # the text alternative holds both directions
    assert "viewBox" in html and 'width="100%"' in html
    current = html.split('id="current"')[1].split("</table>")[0]
    [udp_row] = [r for r in current.split("<tr>") if "rsp.example" in r]
    assert "b-critical" in udp_row  # back MOS 3.2 is under the rule's critical 3.6
    assert "voice quality (MOS) from the far end too low: 3.2" in udp_row

    # 7 days: hourly roll-ups once the hours are rolled, the raw results until then
    def mos_caption(span: str) -> str:
        page = ui.get(f"/ui/sites/{t.site_id}", params={"span": span})
        assert page.status_code == 200
        [fig] = [f for f in page.text.split("<figure") if "MOS, udp to rsp.example" in f]
        return fig.split("<caption>")[1].split("</caption>")[0]

    assert mos_caption("7d").endswith("raw results")
    rollups.roll_due(env["store"], time.time() + 2 * 3600)
    assert mos_caption("7d").endswith("hourly roll-ups (median per hour)")
    assert mos_caption("30d").endswith("hourly roll-ups (median per hour)")
    assert mos_caption("24h").endswith("raw results")
    assert login(srv, env["other"]).get(f"/ui/sites/{t.site_id}").status_code == 404


def _dir(mos: float, loss: float, jitter: float) -> dict[str, Any]:
    return {"loss_pct": loss, "jitter_ms": jitter, "mos": mos, "r_factor": 80.0}
