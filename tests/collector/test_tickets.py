"""Rules and tickets over the HTTP API (real uvicorn), on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import sqlalchemy as sa

from agent.wire.errors import CATEGORY_MESSAGES
from agent.wire.results import LOAD_TEST_TAG
from collector import tickets
from collector.context import load_site_context
from collector.schema import outbox
from collector.worker import check_silent
from tests.collector.conftest import icmp, new_tenant, result


def _tickets(t, **params):
    r = t.partner.get("/api/v1/tickets", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_rule_trips_after_n_and_clears_after_m(make_store, serve):
    srv = serve(make_store(rules={"rtt": {"trip_after": 3, "clear_after": 2}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(200))
    t.post(icmp(210))
    assert _tickets(t) == []  # two bad evaluations: not yet
    t.post(icmp(220))
    [tk] = _tickets(t)
    assert (tk["rule_id"], tk["target"], tk["severity"], tk["state"]) == (
        "rtt",
        "192.0.2.1",
        "warning",
        "open",
    )
    t.post(icmp(400))  # worse: the same ticket escalates, no second ticket
    [tk] = _tickets(t)
    assert tk["severity"] == "critical"
    t.post(icmp(20))
    assert _tickets(t)[0]["state"] == "open"  # one good evaluation: not yet
    t.post(icmp(20))
    [tk] = _tickets(t)
    assert tk["state"] == "resolved" and tk["resolved_at"]
    detail = t.partner.get(f"/api/v1/tickets/{tk['id']}").json()
    assert [e["kind"] for e in detail["events"]] == ["opened", "escalated", "auto_resolved"]


def test_one_ticket_per_site_rule_target(make_store, serve):
    srv = serve(make_store(rules={"rtt": {"trip_after": 1}, "loss": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(*[icmp(300, target="192.0.2.1") for _ in range(5)])
    t.post(*[icmp(300, target="192.0.2.2") for _ in range(5)])
    t.post(icmp(300, target="192.0.2.1", loss=50))
    tickets = _tickets(t, state="open")
    keys = sorted((x["rule_id"], x["target"]) for x in tickets)
    assert keys == [("loss", "192.0.2.1"), ("rtt", "192.0.2.1"), ("rtt", "192.0.2.2")]


def test_evidence_holds_tripping_results_context_and_site_info(make_store, serve):
    srv = serve(make_store())
    site = {
        "address": "1 Main St",
        "firewall_make": "pfSense",
        "sip_server": "sip.example.net",
        "contacts": [{"name": "Ann", "phone": "+1555"}],
    }
    t = new_tenant(srv, "acme", site=site)
    trace = result("trace", measurement={"hops": [{"ttl": 1, "address": "10.0.0.1"}]})
    host = result("host", measurement={"cpu_pct": 12.5, "memory_pct": 40.0})
    bad = [icmp(250) for _ in range(3)]
    t.post(trace, host, *bad)
    [tk] = _tickets(t)
    ev = t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["evidence"]
    assert [r["id"] for r in ev["results"]] == [r["id"] for r in bad]
    assert ev["context"]["trace"]["id"] == trace["id"]
    assert ev["context"]["host"]["measurement"]["cpu_pct"] == 12.5
    assert ev["site"]["address"] == "1 Main St" and ev["site"]["firewall_make"] == "pfSense"
    assert ev["site"]["contacts"][0]["name"] == "Ann"
    assert ev["rule"]["id"] == "rtt" and ev["rule"]["warning"] == 150


def test_reopen_within_flap_window_else_new_ticket(make_store, serve):
    rules = {"loss": {"trip_after": 1, "clear_after": 1}}
    srv = serve(make_store(rules=rules, flap_window_s=3600))
    t = new_tenant(srv, "acme")
    t.post(icmp(10, loss=20))
    t.post(icmp(10, loss=0))
    t.post(icmp(10, loss=20))
    [tk] = _tickets(t)
    assert tk["state"] == "open" and tk["reopen_count"] == 1
    kinds = [e["kind"] for e in t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["events"]]
    assert kinds == ["opened", "auto_resolved", "reopened"]

    srv2 = serve(make_store(rules=rules, flap_window_s=0))
    u = new_tenant(srv2, "bravo")
    u.post(icmp(10, loss=20))
    u.post(icmp(10, loss=0))
    time.sleep(0.01)
    u.post(icmp(10, loss=20))
    states = sorted(x["state"] for x in _tickets(u))
    assert states == ["open", "resolved"]


def test_ack_comment_resolve_workflow(make_store, serve):
    srv = serve(make_store(rules={"rtt": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300))
    [tk] = _tickets(t)
    tid = tk["id"]
    r = t.partner.post(f"/api/v1/tickets/{tid}/ack", json={"message": "on it"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert t.partner.post(f"/api/v1/tickets/{tid}/ack").status_code == 409
    r = t.partner.post(f"/api/v1/tickets/{tid}/comments", json={"message": "ISP called"})
    assert r.status_code == 201
    assert _tickets(t, state="open")[0]["id"] == tid  # acknowledged still counts as open
    assert _tickets(t, state="acknowledged")[0]["id"] == tid
    r = t.partner.post(f"/api/v1/tickets/{tid}/resolve", json={"message": "fixed"})
    assert r.json()["state"] == "resolved"
    events = r.json()["events"]
    assert [e["kind"] for e in events] == ["opened", "acknowledged", "comment", "resolved"]
    assert events[1]["actor"] == "partner:acme" and events[2]["message"] == "ISP called"
    assert t.partner.post(f"/api/v1/tickets/{tid}/resolve").status_code == 409
    # The condition is still there: resolving by hand resets the rule, so it trips again
    # and, within the flap window, reopens the same ticket.
    t.post(icmp(300))
    [again] = _tickets(t)
    assert again["id"] == tid and again["state"] == "open" and again["reopen_count"] == 1


def test_filters_by_severity_and_site(make_store, serve):
    srv = serve(make_store(rules={"rtt": {"trip_after": 1}, "loss": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(200, loss=10))  # rtt warning, loss critical
    assert [x["rule_id"] for x in _tickets(t, severity="critical")] == ["loss"]
    assert [x["rule_id"] for x in _tickets(t, severity="warning")] == ["rtt"]
    assert len(_tickets(t, site_id=t.site_id)) == 2
    assert _tickets(t, state="resolved") == []


def test_voice_sip_and_bandwidth_rules(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(
        srv, "acme", site={"contracted_down_bps": 100_000_000, "contracted_up_bps": 20_000_000}
    )
    udp = {
        "rtt_ms": {"avg": 40},
        "loss_pct": 0,
        "out": {"loss_pct": 0, "jitter_ms": 2, "mos": 4.3, "r_factor": 92},
        "back": {"loss_pct": 3, "jitter_ms": 45, "mos": 3.4, "r_factor": 60},
    }
    bw = {"download": {"throughput_bps": 60_000_000}, "upload": {"throughput_bps": 19_000_000}}
    for _ in range(3):
        t.post(
            result("udp", "198.51.100.7:862", udp),
            result("bandwidth", "198.51.100.7", bw),
            result("sip_register", "sip:100@pbx.example.net", None, success=False),
            result(
                "sip_call",
                "sip:echo@pbx.example.net",
                {"setup_ok": True, "srd_ms": 80, "out": {"mos": 4.4}, "back": {"mos": 4.4}},
            ),
        )
    got = {(x["rule_id"], x["severity"]) for x in _tickets(t)}
    assert got == {
        ("loss_back", "warning"),
        ("jitter_back", "warning"),
        ("mos_back", "critical"),
        ("bandwidth_down", "warning"),
        ("sip_registration", "critical"),
    }


def test_partner_and_site_overrides(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    r = t.partner.put(
        "/api/v1/rules/overrides", json={"overrides": {"rtt": {"warning": 50, "trip_after": 1}}}
    )
    assert r.status_code == 200
    r = t.partner.put(
        "/api/v1/rules/overrides",
        json={"site_id": t.site_id, "overrides": {"rtt": {"warning": 80}}},
    )
    assert r.status_code == 200
    rules = {x["id"]: x for x in t.partner.get("/api/v1/rules").json()["rules"]}
    assert rules["rtt"]["warning"] == 50
    site_rules = t.partner.get("/api/v1/rules", params={"site_id": t.site_id}).json()
    assert {x["id"]: x for x in site_rules["rules"]}["rtt"]["warning"] == 80
    t.post(icmp(70))
    assert _tickets(t) == []  # 70 < 80 for this site
    t.post(icmp(90))
    assert [x["rule_id"] for x in _tickets(t)] == ["rtt"]
    bad = t.partner.put("/api/v1/rules/overrides", json={"overrides": {"rtt": {"trip": 1}}})
    assert bad.status_code == 422 and bad.json()["detail"] == "rule 'rtt': trip: unknown key"
    bad = t.partner.put("/api/v1/rules/overrides", json={"overrides": {"custom": {"op": "above"}}})
    assert bad.status_code == 422 and "op 'above' needs a field" in bad.json()["detail"]


def test_custom_rule_on_a_nested_field_of_the_model(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    custom = {
        "late_back": {
            "probes": ["udp", "sip_call"],
            "field": "back.late_pct",
            "op": "above",
            "warning": 2,
            "trip_after": 2,
            "description": "late packets from the far end",
        }
    }
    assert t.partner.put("/api/v1/rules/overrides", json={"overrides": custom}).status_code == 200
    t.post(result("udp", "r.example.net", {"back": {"source": "stream", "late_pct": 5.0}}))
    t.post(result("udp", "r.example.net", {"back": {"source": "stream"}}))  # absent: no verdict
    assert _tickets(t) == []
    t.post(result("udp", "r.example.net", {"back": {"source": "stream", "late_pct": 4.0}}))
    [tk] = _tickets(t)
    assert tk["rule_id"] == "late_back" and "late packets" in tk["title"]


def test_rule_on_a_field_no_probe_produces_is_refused(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    custom = {"dns_slow": {"probes": ["dns"], "field": "timing.resolve_ms", "op": "above",
                           "warning": 100}}  # fmt: skip
    r = t.partner.put("/api/v1/rules/overrides", json={"overrides": custom})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "rule 'dns_slow': field 'timing.resolve_ms': the dns measurement has no number at "
        "'timing.resolve_ms' (did you mean 'resolution_ms'?)"
    )


def test_silent_agent_trips_and_clears(make_store, serve):
    now = [time.time()]
    store = make_store(silent_agent_timeout_s=300)
    srv = serve(store, clock=lambda: now[0], background=False)
    t = new_tenant(srv, "acme")
    check_silent(srv.state)
    assert _tickets(t) == []
    now[0] += 301
    check_silent(srv.state)
    [tk] = _tickets(t)
    assert (tk["rule_id"], tk["target"], tk["severity"]) == ("agent_silent", t.agent_id, "critical")
    t.post(icmp(10))  # the agent is back
    check_silent(srv.state)
    assert _tickets(t)[0]["state"] == "resolved"


def test_a_version_1_voice_stream_is_upgraded_and_trips_only_its_direction(make_store, serve):
    """Agents not yet updated send `forward`/`backward`: the collector reads them as
    `out`/`back`, so their loss still opens the ticket of its direction."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    lossy = {"packets": 500, "lost": 100, "loss_pct": 20.0, "jitter_ms": 2.0, "mos": 2.7}
    clean = {"packets": 400, "lost": 0, "loss_pct": 0.0, "jitter_ms": 1.0, "mos": 4.4}
    for _ in range(3):
        m = {"loss_pct": 20.0, "forward": lossy, "backward": clean}
        assert t.post(result("udp", "r.example.net", m, schema_version=1))["stored"] == 1
    got = {(tk["rule_id"], tk["severity"]) for tk in _tickets(t)}
    assert got == {("loss_out", "critical"), ("mos_out", "critical")}
    [row] = t.partner.get("/api/v1/results", params={"limit": 1}).json()
    out = row["measurement"]["out"]
    assert (out["packets_sent"], out["packets_received"], out["source"]) == (500, 400, "stream")
    assert "forward" not in row["measurement"]


def test_a_ticket_opened_by_hand_is_one_per_key_notified_and_takes_evidence(make_store, serve):
    hook = {"type": "webhook", "url": "http://127.0.0.1:9/never", "partners": ["acme"]}
    store = make_store(notifications=[hook])
    srv = serve(store, background=False)
    t = new_tenant(srv, "acme")
    now = time.time()

    def open_one() -> str:
        with store.write() as c:
            ctx = load_site_context(c, t.site_id)
            return tickets.open_manual_ticket(
                c, store.config, ctx, rule_id="readiness", target="readiness:j1",
                severity="critical", title="acme-hq: VoIP readiness test failed",
                evidence={"failed_checks": ["voice.jitter.out"]},
                message="readiness test j1 failed", actor="tier1", now=now,
            )  # fmt: skip

    tid = open_one()
    assert open_one() == tid  # one open ticket per (site, rule, target)
    with store.write() as c:
        got = tickets.attach_evidence(
            c, t.partner_id, tid, "call_info", {"user": "Alice"}, kind="call_info",
            message="user: Alice", actor="tier1", now=now + 1,
        )  # fmt: skip
        payloads = [r.payload for r in c.execute(sa.select(outbox))]
    assert got["evidence"] == {
        "failed_checks": ["voice.jitter.out"], "call_info": {"user": "Alice"}}  # fmt: skip
    assert [(e["kind"], e["actor"]) for e in got["events"]] == [
        ("opened", "tier1"), ("call_info", "tier1")]  # fmt: skip
    assert [(p["event"], p["ticket"]["id"], p["ticket"]["rule"]) for p in payloads] == [
        ("opened", tid, "readiness")]  # fmt: skip
    [listed] = _tickets(t)
    assert (listed["id"], listed["severity"], listed["state"]) == (tid, "critical", "open")


def test_evidence_of_a_failure_says_what_its_error_category_means(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    err = {"class": "SipError", "category": "sip", "message": "REGISTER answered 403 Forbidden"}
    bad = [result("sip_register", "sip:pbx.example.net", None, success=False, error=err)
           for _ in range(3)]  # fmt: skip
    t.post(*bad)
    [tk] = _tickets(t)
    assert tk["rule_id"] == "sip_registration"
    ev = t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["evidence"]
    got = ev["results"][0]["error"]
    assert got["message"] == "REGISTER answered 403 Forbidden"
    assert got["meaning"] == CATEGORY_MESSAGES["sip"]


def test_a_capacity_ramp_overload_is_stored_but_trips_nothing(make_store, serve):
    """The readiness capacity ramp overloads the link on purpose: its streams are kept as
    results of the job, but they are not the site's latest figures and open no ticket."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    lossy = {"source": "stream", "packets_sent": 500, "lost": 100, "loss_pct": 20.0, "mos": 2.7}
    ramp = [result("udp", "r.example.net", {"out": lossy}, tags={LOAD_TEST_TAG: "capacity"})
            for _ in range(4)]  # fmt: skip
    assert t.post(*ramp)["stored"] == 4
    assert _tickets(t) == []
    assert len(t.partner.get("/api/v1/results", params={"limit": 10}).json()) == 4
    scrape = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers)
    assert scrape.status_code == 200 and "# TYPE qos_scout_loss_pct gauge" in scrape.text
    assert "qos_scout_loss_pct{" not in scrape.text


def _actor_refused(r: httpx.Response) -> None:
    """422 with the detail naming the `actor` field of the body."""
    assert r.status_code == 422, r.text
    assert ["body", "actor"] in [e["loc"] for e in r.json()["detail"]], r.text


def test_the_actor_in_the_audit_trail_is_the_api_key_never_the_body(make_store, serve):
    srv = serve(make_store(rules={"rtt": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300))
    [tk] = _tickets(t)
    base = f"/api/v1/tickets/{tk['id']}"
    forged = {"actor": "someone-else", "message": "x"}
    _actor_refused(t.partner.post(f"{base}/ack", json=forged))
    _actor_refused(t.partner.post(f"{base}/resolve", json=forged))
    _actor_refused(t.partner.post(f"{base}/comments", json=forged))
    _actor_refused(t.partner.put(f"{base}/call_info", json={"user": "Al", "actor": "x"}))
    assert [e["kind"] for e in t.partner.get(base).json()["events"]] == ["opened"]  # nothing
    assert t.partner.post(f"{base}/ack", json={"message": "on it"}).status_code == 200
    assert t.partner.post(f"{base}/comments", json={"message": "ISP"}).status_code == 201
    assert t.partner.put(f"{base}/call_info", json={"user": "Al"}).status_code == 200
    r = t.partner.post(f"{base}/resolve", json={"message": "fixed"})
    assert r.status_code == 200, r.text
    assert [(e["kind"], e["actor"]) for e in r.json()["events"]] == [
        ("opened", "collector"), ("acknowledged", "partner:acme"), ("comment", "partner:acme"),
        ("call_info", "partner:acme"), ("resolved", "partner:acme")]  # fmt: skip


def _form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden inputs of the page's form posting to `action` (whatever the page puts
    there, e.g. an anti-forgery token), so a test submits the form as a browser would."""
    import re

    m = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert m, f"no form posting to {action}"
    fields = {}
    for tag in re.findall(r"<input[^>]*>", m.group(1)):
        if 'type="hidden"' in tag:
            name = re.search(r'name="([^"]*)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = value.group(1) if value else ""
    return fields


def _web_login(srv, key: str) -> httpx.Client:
    from tests.collector.conftest import web_login

    return web_login(srv, key)


def _web_submit(ui: httpx.Client, page: str, action: str, data: dict[str, str]) -> None:
    html = ui.get(page).text
    r = ui.post(action, data={**_form_fields(html, action), **data},
                headers={"Origin": str(ui.base_url).rstrip("/")})  # fmt: skip
    assert r.status_code == 303 and "notice=" not in r.headers["location"], r.headers


def test_the_actor_in_the_audit_trail_is_the_logged_in_user_on_the_web(make_store, serve):
    from collector.tenants import create_partner

    srv = serve(make_store(rules={"rtt": {"trip_after": 1}}))
    with srv.store.write() as c:
        _, key = create_partner(c, "globex", time.time())
    t = new_tenant(srv, "acme")
    acme_key = t.partner.headers["authorization"].split()[1]
    t.post(icmp(300))
    [tk] = _tickets(t)
    page = base = f"/ui/tickets/{tk['id']}"
    from tests.collector.conftest import web_login_as, web_user

    email, password = web_user(srv, acme_key, "technician")
    ui = web_login_as(srv, email, password)
    forged = {"actor": "someone-else"}
    _web_submit(ui, page, f"{base}/ack", {"message": "looking", **forged})
    _web_submit(ui, page, f"{base}/comments", {"message": "called the ISP", **forged})
    _web_submit(ui, page, f"{base}/call_info", {"user": "Alice", **forged})
    _web_submit(ui, page, f"{base}/resolve", {"message": "fixed", **forged})
    events = t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["events"]
    who = f"user:{email}"
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("opened", "collector"), ("acknowledged", who), ("comment", who),
        ("call_info", who), ("resolved", who)]  # fmt: skip
    # The partner's audit log names the same person for each action, newest first.
    log = t.partner.get("/api/v1/audit").json()
    assert [(e["actor"], e["action"]) for e in log[:5]] == [
        (who, "ticket.resolve"), (who, "ticket.call_info"), (who, "ticket.comments"),
        (who, "ticket.ack"), (who, "session.login")]  # fmt: skip
    # Another partner logged in on the web reaches none of it.
    other = _web_login(srv, key)
    token = _form_fields(other.get("/ui/").text, "/ui/logout")  # its own session's token
    r = other.post(f"{base}/comments", data={**token, "message": "hi"})
    assert r.status_code in (303, 404)
    assert len(t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["events"]) == 5
