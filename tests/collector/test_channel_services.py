"""A ticket's life (open, comment, resolve, flap reopen) through each partner channel to
the contract fake of its service, which checks every call against the service's documented
API: ConnectWise PSA, Autotask, HaloPSA, Teams, Slack, PagerDuty. One collector (SQLite,
delivery driven by hand) serves the module; each service has a partner of its own."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from collector import psa
from collector.channels import SECRET_FIELDS
from collector.config import ChannelsConfig, CollectorConfig
from collector.egress import Egress
from collector.keys import new_id
from collector.messages import Message
from collector.notifiers import DeliveryError
from collector.outbox import pending_count
from collector.store import Store
from collector.worker import deliver_due
from tests.collector.conftest import SCRAPE_TOKEN, LiveServer, Tenant, icmp, new_tenant, web_login
from tests.collector.fakes.chat import PagerDutyFake, SlackFake, TeamsFake
from tests.collector.fakes.psa import AutotaskFake, ConnectWiseFake, HaloFake
from tests.collector.test_web_security import _hidden, _login

CW = "/v4_6_release/apis/3.0/service/tickets"
AT = "/atservicesrest/V1.0"
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("channels") / "c.sqlite3"
    cfg = CollectorConfig(
        db=f"sqlite:///{db}",
        rules={"rtt": {"trip_after": 1, "clear_after": 1}},
        metrics={"token": SCRAPE_TOKEN},
        channels={"master_keys": [Fernet.generate_key().decode()],
                  "allow_hosts": ["127.0.0.1"], "timeout_s": 5},
        outbox={"retry_base_s": 0.01, "retry_max_s": 0.01},
    )  # fmt: skip
    store = Store(cfg)
    store.migrate()
    server = LiveServer(store, background=False).start()
    yield server
    server.stop()
    store.dispose()


def drain(srv: LiveServer) -> None:
    """Deliver until nothing is pending (retries are due 10 ms after a failure here)."""
    deadline = time.monotonic() + 20
    while True:
        deliver_due(srv.state)
        with srv.store.read() as c:
            if pending_count(c) == 0:
                return
        assert time.monotonic() < deadline, "the outbox did not drain"


def life(srv: LiveServer, t: Tenant, between: Any = None) -> str:
    """Open, comment, resolve, reopen within the flap window; returns our ticket id."""
    t.post(icmp(300))
    drain(srv)
    tid = str(t.partner.get("/api/v1/tickets").json()[0]["id"])
    if between:
        between(tid)
    t.partner.post(f"/api/v1/tickets/{tid}/comments", json={"message": "checking the SBC"})
    drain(srv)
    t.post(icmp(10))
    drain(srv)
    t.post(icmp(300))
    drain(srv)
    detail = t.partner.get(f"/api/v1/tickets/{tid}").json()
    assert detail["reopen_count"] == 1 and detail["state"] == "open"
    return tid


def channel(t: Tenant, body: dict[str, Any]) -> str:
    r = t.partner.post("/api/v1/channels", json={"name": body["type"]} | body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_connectwise_one_ticket_notes_close_and_reopen_despite_a_lost_answer(srv):
    fake = ConnectWiseFake("qscorp", "pub", "priv", "cid-9")
    try:
        t = new_tenant(srv, "cw-partner")
        cid = channel(t, {"type": "connectwise", "url": fake.api, "company": "qscorp",
                          "client_id": "cid-9", "public_key": "pub", "private_key": "priv",
                          "board": "Voice", "status_closed": "Closed"})  # fmt: skip
        t.partner.put(f"/api/v1/channels/{cid}/mappings/{t.site_id}", json={"company": "ACME-CORP"})
        fake.drop_next_create = True  # the create is done, its answer lost
        tid = life(srv, t)
        assert len(fake.tickets) == 1  # the retry found it by its reference
        [(ext, pt)] = fake.tickets.items()
        assert pt["externalXRef"] == f"qs-{tid}" and pt["status"] == {"name": "New"}
        assert fake.ok_calls() == [
            ("GET", CW),  # the retry searched first
            ("POST", f"{CW}/{ext}/notes"),  # the comment
            ("POST", f"{CW}/{ext}/notes"),  # resolved: a note, then the status
            ("PATCH", f"{CW}/{ext}"),
            ("PATCH", f"{CW}/{ext}"),  # reopened: the status, then a note
            ("POST", f"{CW}/{ext}/notes"),
        ]
        assert fake.calls[0].status == -1  # the dropped create
        assert "checking the SBC" in fake.notes[ext][0]
        assert fake.refusals == []
        shown = t.partner.get(f"/api/v1/tickets/{tid}").json()["external"]
        assert [(s["external_id"], s["state"]) for s in shown] == [(str(ext), "open")]
        key = str(t.partner.headers["Authorization"]).removeprefix("Bearer ")
        ui = _login(srv, key)
        page = ui.get(f"/ui/tickets/{tid}").text
        assert f"connectwise (connectwise) #{ext}, open" in page
        # The channels page: the channel, nothing waiting, a test that reaches the PSA.
        page = ui.get("/ui/channels").text
        assert f'id="ch-{cid}"' in page and "0 pending" in page and "priv" not in page
        assert "<style" not in page and " style=" not in page
        form = _hidden(page, f"/ui/channels/{cid}/test")
        r = ui.post(f"/ui/channels/{cid}/test", data=form)
        assert r.status_code == 303 and "it%20worked" in r.headers["location"]
        assert fake.ok_calls()[-1] == ("GET", CW)
        refused = ui.post(f"/ui/channels/{cid}/test", data={})  # no anti-forgery token
        assert refused.status_code == 403
    finally:
        fake.close()


def test_autotask_zone_headers_patch_not_put_and_child_notes(srv):
    fake = AutotaskFake("api@acme.example", "INTCODE", "s3cret")
    try:
        t = new_tenant(srv, "at-partner")
        cid = channel(t, {"type": "autotask", "zone_url": fake.zone_url,
                          "username": "api@acme.example", "integration_code": "INTCODE",
                          "secret": "s3cret", "queue_id": 8})  # fmt: skip
        t.post(icmp(300))  # no mapping yet: the delivery waits, saying why
        deliver_due(srv.state)
        waiting = t.partner.get(f"/api/v1/channels/{cid}").json()["deliveries"]
        assert waiting["pending"] == 1 and "no `company_id` mapped" in waiting["last_error"]
        t.partner.put(f"/api/v1/channels/{cid}/mappings/{t.customer_id}", json={"company_id": 174})
        drain(srv)
        assert t.partner.get(f"/api/v1/channels/{cid}").json()["deliveries"]["pending"] == 0
        tid = life(srv, t)
        [(ext, pt)] = fake.tickets.items()
        # Only partial updates: a PUT would have blanked the title and the description.
        assert pt["title"] and pt["description"] and pt["externalID"] == f"qs-{tid}"
        assert pt["status"] == 1 and pt["queueID"] == 8  # reopened
        calls = fake.ok_calls()
        assert calls[:2] == [
            ("GET", "/atservicesrest/v1.0/zoneInformation"),
            ("POST", f"{AT}/Tickets"),
        ]
        assert ("PUT", f"{AT}/Tickets") not in calls
        assert calls.count(("PATCH", f"{AT}/Tickets")) == 2  # closed, reopened
        assert calls.count(("GET", "/atservicesrest/v1.0/zoneInformation")) == 1  # kept
        assert len(fake.notes[ext]) == 3  # comment, resolved, reopened
        assert fake.refusals == []
    finally:
        fake.close()


def _at_post(fake: AutotaskFake, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"ApiIntegrationCode": fake.code, "UserName": fake.username, "Secret": fake.secret}
    return httpx.post(f"{fake.url}{AT}{path}", json=body, headers=headers, timeout=5)


def test_autotask_fake_refuses_what_autotask_refuses():
    """The rules the fake holds the client to: Autotask's required fields and string
    lengths of Tickets and TicketNotes, and a tenant's category requiring one more."""
    fake = AutotaskFake("api@acme.example", "INTCODE", "s3cret")
    try:
        full = {"companyID": 174, "title": "t" * 255, "description": "d" * 8000, "status": 1,
                "priority": 2, "externalID": "x" * 50}  # fmt: skip
        for field in ("companyID", "title", "status", "priority"):
            r = _at_post(fake, "/Tickets", {k: v for k, v in full.items() if k != field})
            assert r.status_code == 500, (field, r.text)
            assert r.json() == {"errors": [f"{field} is required.; on record number [0]."]}
        for field, most in (("title", 255), ("description", 8000), ("externalID", 50)):
            r = _at_post(fake, "/Tickets", full | {field: "y" * (most + 1)})
            assert r.status_code == 500 and f"{field} is longer than {most}" in r.text, field
        fake.category_requires = {"queueID"}
        assert "queueID is required" in _at_post(fake, "/Tickets", full).text
        made = _at_post(fake, "/Tickets", full | {"queueID": 8})
        assert made.status_code == 200, made.text  # every field at its longest
        tid = made.json()["itemId"]
        note = {"title": "n" * 250, "description": "d" * 32000, "noteType": 1, "publish": 1}
        for field in ("description", "noteType", "publish", "title"):
            r = _at_post(fake, f"/Tickets/{tid}/Notes", {k: v for k, v in note.items()
                                                         if k != field})  # fmt: skip
            assert r.status_code == 500 and f"{field} is required" in r.text, field
        for field, most in (("title", 250), ("description", 32000)):
            r = _at_post(fake, f"/Tickets/{tid}/Notes", note | {field: "y" * (most + 1)})
            assert r.status_code == 500 and f"{field} is longer than {most}" in r.text, field
        r = _at_post(fake, f"/Tickets/{tid}/Notes", note | {"ticketID": tid + 1})
        assert r.status_code == 500 and "not the ticket" in r.text
        assert _at_post(fake, f"/Tickets/{tid}/Notes", note | {"ticketID": tid}).status_code == 200
        assert _at_post(fake, f"/Tickets/{tid}/Notes", note).status_code == 200
        assert len(fake.notes[tid]) == 2
    finally:
        fake.close()


def test_autotask_client_cuts_text_to_the_field_lengths_and_names_the_note_ticket():
    fake = AutotaskFake("api@acme.example", "INTCODE", "s3cret")
    cfg = {"zone_url": fake.zone_url, "username": "api@acme.example",
           "integration_code": "INTCODE", "secret": "s3cret", "queue_id": None, "priority": 2,
           "status_new": 1}  # fmt: skip
    long = Message(event="opened", ticket_id=new_id(), severity="critical", title="T" * 400,
                   text="D" * 40000)  # fmt: skip
    try:
        with Egress(ChannelsConfig(allow_hosts=["127.0.0.1"], timeout_s=5)) as eg:
            at = psa.Autotask(eg, cfg)
            ref = psa.reference(long.ticket_id)
            assert len(ref) <= 50  # our reference fits externalID whole
            ext = at.create(at.create_body(long, {"company_id": 174}, ref))
            at.note(ext, long)
            with pytest.raises(DeliveryError, match="longer than externalID's 50"):
                at.create_body(long, {"company_id": 174}, "qs-" + "x" * 48)
        assert fake.refusals == []
        made = fake.tickets[int(ext)]
        assert (len(made["title"]), len(made["description"])) == (255, 8000)
        assert made["externalID"] == ref
        [note] = [c.json() for c in fake.calls if c.path.endswith("/Notes")]
        assert note["ticketID"] == int(ext)
        assert (len(note["title"]), len(note["description"])) == (250, 32000)
    finally:
        fake.close()


def test_autotask_tenant_whose_category_requires_a_queue_gets_the_channel_queue(srv):
    """A ticket category may make queueID required: the create is refused (the outbox row
    keeps Autotask's reason and waits) until the channel or the mapping names a queue."""
    fake = AutotaskFake("api@acme.example", "INTCODE", "s3cret")
    fake.category_requires = {"queueID"}
    try:
        t = new_tenant(srv, "at-queue-partner")
        cid = channel(t, {"type": "autotask", "zone_url": fake.zone_url,
                          "username": "api@acme.example", "integration_code": "INTCODE",
                          "secret": "s3cret"})  # fmt: skip
        t.partner.put(f"/api/v1/channels/{cid}/mappings/{t.customer_id}", json={"company_id": 174})
        t.post(icmp(300))
        deliver_due(srv.state)
        waiting = t.partner.get(f"/api/v1/channels/{cid}").json()["deliveries"]
        assert waiting["pending"] == 1 and "queueID is required" in waiting["last_error"]
        assert fake.tickets == {}
        r = t.partner.patch(f"/api/v1/channels/{cid}", json={"queue_id": 8})
        assert r.status_code == 200, r.text
        drain(srv)
        [pt] = fake.tickets.values()
        assert pt["queueID"] == 8 and pt["externalID"].startswith("qs-")
    finally:
        fake.close()


def test_halo_token_array_bodies_actions_and_an_expired_token(srv):
    fake = HaloFake("halo-client", "halo-secret")
    try:
        t = new_tenant(srv, "halo-partner")
        cid = channel(t, {"type": "halo", "api_url": fake.url, "auth_url": f"{fake.url}/auth",
                          "client_id": "halo-client", "client_secret": "halo-secret"})  # fmt: skip
        t.partner.put(f"/api/v1/channels/{cid}/mappings/{t.customer_id}",
                      json={"client_id": 12, "site_id": 34})  # fmt: skip
        tid = life(srv, t, between=lambda _tid: fake.expire_tokens())
        [(ext, pt)] = fake.tickets.items()
        assert f"[qs-{tid}]" in pt["summary"] and pt["status_id"] == 1  # reopened
        assert len(fake.actions[ext]) == 3
        tokens = [c for c in fake.calls if c.path == "/auth/token" and c.status == 200]
        assert len(tokens) == 2  # the expired token was refused once, then renewed
        assert [c.status for c in fake.calls].count(401) == 1
        assert [r for r in fake.refusals if "expired" not in r[1]] == []
    finally:
        fake.close()


def test_teams_and_slack_one_message_per_event(srv):
    teams, slack = TeamsFake(), SlackFake()
    try:
        t = new_tenant(srv, "chat-partner")
        channel(t, {"type": "teams", "url": teams.hook})
        channel(t, {"type": "slack", "url": slack.hook})
        life(srv, t)
        words = ["opened", "commented", "resolved", "reopened"]
        assert [c["body"][0]["text"].rsplit("— ", 1)[1].split()[0] for c in teams.cards] == words
        assert [m["blocks"][0]["text"]["text"].rsplit("— ", 1)[1].split()[0]
                for m in slack.messages] == words  # fmt: skip
        assert teams.refusals == [] and slack.refusals == []
    finally:
        teams.close()
        slack.close()


def test_pagerduty_one_dedup_key_trigger_resolve_retrigger(srv):
    pd, late = PagerDutyFake(ROUTING_KEY), PagerDutyFake(ROUTING_KEY)
    try:
        t = new_tenant(srv, "pd-partner")
        channel(t, {"type": "pagerduty", "url": pd.enqueue, "routing_key": ROUTING_KEY})

        def ack(tid: str) -> None:
            t.partner.post(f"/api/v1/tickets/{tid}/ack", json={"message": "mine"})

        tid = life(srv, t, between=ack)
        actions = [c.json()["event_action"] for c in pd.calls]
        # The comment pages nobody; resolved, then a new incident for the flap.
        assert actions == ["trigger", "acknowledge", "resolve", "trigger"]
        assert {c.json()["dedup_key"] for c in pd.calls} == {f"qos-scout-{tid}"}
        assert pd.opened == 2 and pd.noops == 0
        assert pd.calls[0].json()["payload"]["severity"] == "warning"
        assert pd.refusals == []
        # A pager added later hears the ack of a ticket it never saw: PagerDuty ignores it.
        channel(t, {"type": "pagerduty", "name": "late", "url": late.enqueue,
                    "routing_key": ROUTING_KEY})  # fmt: skip
        ack(tid)
        drain(srv)
        assert [c.status for c in late.calls] == [202]
        assert late.opened == 0 and late.noops == 1
    finally:
        pd.close()
        late.close()


# -- the channel forms of the support pages ----------------------------------------------

FORMS: dict[str, dict[str, str]] = {
    "connectwise": {"url": "https://api-eu.myconnectwise.net/v4_6_release/apis/3.0",
                    "company": "qscorp", "client_id": "cid-1", "public_key": "pk-1",
                    "private_key": "sk-1", "board": "Voice"},
    "autotask": {"username": "api@acme.example", "integration_code": "INT-1",
                 "secret": "sk-2", "queue_id": "8"},
    "halo": {"api_url": "https://acme.halopsa.com", "auth_url": "https://acme.halopsa.com/auth",
             "client_id": "halo-1", "client_secret": "sk-3"},
    "teams": {"url": "https://prod.example.logic.azure.com/workflows/x?sig=sk-4"},
    "slack": {"url": "https://hooks.slack.com/services/T/B/sk-5"},
    "pagerduty": {"routing_key": ROUTING_KEY},
}  # fmt: skip


def _secrets(srv: LiveServer, cid: str) -> dict[str, Any]:
    from collector import channels
    from collector.secretbox import SecretBox

    with srv.store.read() as c:
        loaded = channels.load_for_delivery(
            c, SecretBox.from_config(srv.store.config.channels), cid
        )
    assert loaded is not None
    return loaded[1]


def test_channel_forms_create_edit_map_and_delete_each_type(srv):
    t = new_tenant(srv, "form-partner")
    ui = web_login(srv, str(t.partner.headers["Authorization"]).removeprefix("Bearer "))
    made = {}
    for kind, fields in FORMS.items():
        page = ui.get("/ui/channels/new", params={"type": kind})
        assert page.status_code == 200, page.text
        form = _hidden(page.text, "/ui/channels")
        r = ui.post("/ui/channels", data={**form, "name": f"my {kind}", "enabled": "1", **fields})
        assert r.status_code == 303, r.text
        cid = made[kind] = r.headers["location"].split("/")[-1].split("?")[0]
        shown = t.partner.get(f"/api/v1/channels/{cid}").json()
        assert shown["type"] == kind and shown["enabled"] is True, shown
        opened = _secrets(srv, cid)
        for k, v in fields.items():  # what was typed is what the API has (ints as ints)
            assert str(opened[k]) == v, (kind, k)
            if k in SECRET_FIELDS[kind]:
                assert shown[k] == "********"
        page = ui.get(f"/ui/channels/{cid}").text
        for k in SECRET_FIELDS[kind]:
            assert fields[k] not in page  # never shown back, only "set"
            assert re.search(rf'<label for="f-{k}">[^<]*\(set\)</label>', page), (kind, k)
    # Edit: a blank credential keeps its value; routing, enabled and settings change.
    at = made["autotask"]
    form = _hidden(ui.get(f"/ui/channels/{at}").text, f"/ui/channels/{at}")
    r = ui.post(f"/ui/channels/{at}", data={
        **form, "name": "autotask main", "username": "api2@acme.example", "queue_id": "",
        "sev_critical": "1", f"cust_{t.customer_id}": "1", "rules": "rtt, mos",
    })  # fmt: skip
    assert r.status_code == 303, r.text
    shown = t.partner.get(f"/api/v1/channels/{at}").json()
    assert shown["name"] == "autotask main" and shown["enabled"] is False
    assert shown["queue_id"] is None and shown["username"] == "api2@acme.example"
    assert shown["routing"] == {"severities": ["critical"], "customers": [t.customer_id],
                                "rules": ["rtt", "mos"]}  # fmt: skip
    assert _secrets(srv, at)["secret"] == "sk-2"
    # A bad field: the form again, the API's reason next to it, the valid fields kept.
    page = ui.get("/ui/channels/new", params={"type": "slack"}).text
    bad = ui.post("/ui/channels", data={**_hidden(page, "/ui/channels"), "name": "kept name",
                                        "url": "http://hooks.slack.com/x"})  # fmt: skip
    api = t.partner.post("/api/v1/channels", json={"type": "slack", "name": "kept name",
                                                   "url": "http://hooks.slack.com/x"})  # fmt: skip
    assert bad.status_code == api.status_code == 422
    reason = api.json()["detail"]
    assert f'<p class="field-error" id="err-url">{reason}</p>' in bad.text.replace("&#39;", "'")
    assert 'value="kept name"' in bad.text
    page = ui.get("/ui/channels/new", params={"type": "halo"}).text
    bad = ui.post("/ui/channels", data={**_hidden(page, "/ui/channels"), "name": "h2",
                                        "api_url": "https://h.example"})  # fmt: skip
    assert bad.status_code == 422 and 'id="err-auth_url">Field required' in bad.text
    assert 'value="https://h.example"' in bad.text
    # Odd input anywhere: a 4xx page naming the problem, never a 500.
    odd = [
        ("/ui/channels", {"type": "fax"}, "type: choose one of"),
        ("/ui/channels", {"type": "slack", "name": "n" * 3000, **FORMS["slack"]}, "at most 200"),
        ("/ui/channels", {"type": "slack", "name": "r", "rules": ",".join(["x"] * 300),
                          **FORMS["slack"]}, "at most 200 items"),
        ("/ui/channels", {"type": "autotask", **FORMS["autotask"], "name": "q",
                          "priority": "high"}, "valid integer"),
        (f"/ui/channels/{at}", {"name": "", "status_closed": "-1"}, "greater than or equal"),
        (f"/ui/channels/{at}/mappings", {"scope_id": "nope", "company_id": "1"}, "not found"),
        (f"/ui/channels/{at}/mappings", {"scope_id": t.site_id}, "name at least one PSA id"),
    ]  # fmt: skip
    for path, data, reason in odd:
        r = ui.post(path, data={**form, **data})  # the session's anti-forgery token
        assert 400 <= r.status_code < 500 and reason in r.text, (path, r.status_code, r.text[-300:])
    # The PSA mapping: saved for the site, shown, removed.
    page = ui.get(f"/ui/channels/{at}").text
    r = ui.post(f"/ui/channels/{at}/mappings", data={
        **_hidden(page, f"/ui/channels/{at}/mappings"), "scope_id": t.site_id,
        "company_id": "174", "queue_id": "",
    })  # fmt: skip
    assert r.status_code == 303, r.text
    assert [m["values"] for m in t.partner.get(f"/api/v1/channels/{at}/mappings").json()] == [
        {"company_id": 174}
    ]
    page = ui.get(f"/ui/channels/{at}").text
    assert "company_id 174" in page
    bad = ui.post(f"/ui/channels/{at}/mappings", data={
        **_hidden(page, f"/ui/channels/{at}/mappings"), "scope_id": t.site_id,
        "company_id": "x",
    })  # fmt: skip
    assert bad.status_code == 422 and "company_id" in bad.text
    action = f"/ui/channels/{at}/mappings/{t.site_id}/delete"
    assert ui.post(action, data=_hidden(page, action)).status_code == 303
    assert t.partner.get(f"/api/v1/channels/{at}/mappings").json() == []
    # Another partner's admin: not found; a technician and a customer viewer: refused.
    other = new_tenant(srv, "form-other")
    oui = web_login(srv, str(other.partner.headers["Authorization"]).removeprefix("Bearer "))
    tok = _hidden(oui.get("/ui/channels/new", params={"type": "slack"}).text, "/ui/channels")
    assert oui.get(f"/ui/channels/{at}").status_code == 404
    for path in (f"/ui/channels/{at}", f"/ui/channels/{at}/delete", f"/ui/channels/{at}/mappings",
                 f"/ui/channels/{at}/test"):  # fmt: skip
        assert oui.post(path, data={**tok, "name": "x"}).status_code == 404, path
    key = str(t.partner.headers["Authorization"]).removeprefix("Bearer ")
    for role, cust in (("technician", None), ("customer", t.customer_id)):
        rui = web_login(srv, key, role, cust)
        assert rui.get(f"/ui/channels/{at}").status_code == 403, role
        assert rui.get("/ui/channels/new", params={"type": "slack"}).status_code == 403, role
        r = rui.post("/ui/channels", data={**tok, "type": "slack", **FORMS["slack"]})
        assert r.status_code == 403, role
    assert len(t.partner.get("/api/v1/channels").json()) == len(FORMS)
    # Delete.
    page = ui.get(f"/ui/channels/{at}").text
    r = ui.post(f"/ui/channels/{at}/delete", data=_hidden(page, f"/ui/channels/{at}/delete"))
    assert r.status_code == 303 and "deleted" in r.headers["location"]
    assert t.partner.get(f"/api/v1/channels/{at}").status_code == 404


@pytest.mark.parametrize(
    ("value", "ok"),
    [(12, "12"), ("12", "12"), ("9" * 19, "9" * 19), ("abc", None), ("../1", None),
     ("1/Notes", None), ("١٢", None), ("9" * 20, None), (True, None), (None, None), ("", None),
     (1.5, None)],
)  # fmt: skip
def test_a_psa_ticket_id_that_is_not_a_number_is_refused(value: Any, ok: str | None) -> None:
    """A PSA's ticket id goes into later URLs and `int()` calls: a broken or hostile answer
    fails that delivery with a reason (retried) instead of a traceback in the outbox loop."""
    if ok is not None:
        assert psa._id_of(value, "x create") == ok
        return
    with pytest.raises(DeliveryError, match=r"^x create: the answer"):
        psa._id_of(value, "x create")
