"""Partners' channels through the API, on SQLite and PostgreSQL: created, listed, changed
and deleted by their partner only (another partner gets 404), credentials masked in every
answer and sealed at rest (rotated by the CLI), URLs checked (https, no private address
unless the operator allows the host), routing by severity, customer and rule, mappings,
a ticket's life reaching the partner's ConnectWise and never another partner's channel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet

from collector.schema import external_tickets, outbox, partner_channels
from collector.worker import deliver_due
from tests.collector.conftest import LiveServer, icmp, new_tenant
from tests.collector.fakes.base import Fake
from tests.collector.fakes.chat import PagerDutyFake, SlackFake, TeamsFake
from tests.collector.fakes.psa import AutotaskFake, ConnectWiseFake, HaloFake
from tests.collector.peers import start_collector, wait_for
from tests.collector.pg import free_port

RULES = {"rtt": {"trip_after": 1, "clear_after": 1}}


def _cw(fake: ConnectWiseFake, **kw: object) -> dict[str, object]:
    return {
        "type": "connectwise", "name": "cw", "url": fake.api, "company": "qscorp",
        "client_id": "cid-1", "public_key": "pubkey-1", "private_key": "privkey-1",
        "board": "Voice", **kw,
    }  # fmt: skip


def _drain(srv: object) -> None:
    for _ in range(20):
        if deliver_due(srv.state) == 0:  # type: ignore[attr-defined]
            return


def test_channels_are_the_partners_own_masked_sealed_and_routed(make_store, serve, tmp_path):
    key1, key2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    cfg = {"master_keys": [key1], "allow_hosts": ["127.0.0.1"], "portal_url": "https://qs.example"}
    store = make_store(rules=RULES, channels=cfg)
    srv = serve(store, background=False)
    acme, globex = new_tenant(srv, "acme"), new_tenant(srv, "globex")
    fake = ConnectWiseFake("qscorp", "pubkey-1", "privkey-1", "cid-1")
    other = ConnectWiseFake("qscorp", "pubkey-1", "privkey-1", "cid-1")
    try:
        r = acme.partner.post("/api/v1/channels", json=_cw(fake))
        assert r.status_code == 201, r.text
        ch = r.json()
        assert ch["public_key"] == ch["private_key"] == "********"
        assert "privkey-1" not in r.text and "pubkey-1" not in r.text
        assert "privkey-1" not in acme.partner.get("/api/v1/channels").text
        # Sealed at rest: the row holds neither key in the clear.
        with store.read() as c:
            raw = c.execute(sa.select(partner_channels)).one()
        assert "privkey-1" not in json.dumps(raw.settings) and "privkey-1" not in raw.secret
        assert Fernet(key1.encode()).decrypt(raw.secret.encode())
        # globex: its own channel to its own PSA; acme's channel is a 404 to it.
        r = globex.partner.post("/api/v1/channels", json=_cw(other))
        assert r.status_code == 201, r.text
        for method, path in (
            ("GET", f"/api/v1/channels/{ch['id']}"),
            ("PATCH", f"/api/v1/channels/{ch['id']}"),
            ("POST", f"/api/v1/channels/{ch['id']}/test"),
            ("GET", f"/api/v1/channels/{ch['id']}/mappings"),
            ("PUT", f"/api/v1/channels/{ch['id']}/mappings/{globex.customer_id}"),
            ("DELETE", f"/api/v1/channels/{ch['id']}"),
        ):
            body = {"company": "X"} if method == "PUT" else {"enabled": False}
            kw = {"json": body} if method in ("PATCH", "PUT") else {}
            assert globex.partner.request(method, path, **kw).status_code == 404, (method, path)
        # A mapping names acme's customer, never globex's.
        m = acme.partner.put(
            f"/api/v1/channels/{ch['id']}/mappings/{globex.customer_id}", json={"company": "X"}
        )
        assert m.status_code == 404
        m = acme.partner.put(
            f"/api/v1/channels/{ch['id']}/mappings/{acme.customer_id}",
            json={"company": "ACME-CORP"},
        )
        assert m.status_code == 200, m.text
        # The test action searches the PSA with the credentials: it answers, nothing made.
        t = acme.partner.post(f"/api/v1/channels/{ch['id']}/test")
        assert t.json() == {"ok": True, "error": None}
        assert fake.ok_calls() == [("GET", "/v4_6_release/apis/3.0/service/tickets")]
        # A ticket's life: acme's PSA has it, globex's PSA hears nothing.
        tripped = icmp(300)
        acme.post(tripped)
        _drain(srv)
        [(tid, pt)] = fake.tickets.items()
        assert pt["company"] == {"identifier": "ACME-CORP"} and pt["board"] == {"name": "Voice"}
        ours = acme.partner.get("/api/v1/tickets").json()[0]["id"]
        assert pt["externalXRef"] == f"qs-{ours}"
        assert f"https://qs.example/ui/tickets/{ours}" in pt["initialDescription"]
        avg = tripped["measurement"]["rtt_ms"]["avg"]  # the evidence: the figure that tripped
        assert f"icmp 192.0.2.1: rtt_ms.avg = {avg:g}" in pt["initialDescription"]
        shown = acme.partner.get(f"/api/v1/tickets/{ours}").json()["external"]
        assert shown == [{"channel": "cw", "channel_id": ch["id"], "type": "connectwise",
                          "external_id": str(tid), "state": "open"}]  # fmt: skip
        assert other.calls == []
        # Routing: a channel for critical only takes no warning ticket.
        p = acme.partner.patch(
            f"/api/v1/channels/{ch['id']}", json={"routing": {"severities": ["critical"]}}
        )
        assert p.status_code == 200, p.text
        assert p.json()["private_key"] == "********"
        acme.partner.post(f"/api/v1/tickets/{ours}/comments", json={"message": "looking"})
        with store.read() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 1
        # Rotation: a new first key, the old one second; the CLI re-encrypts everything.
        cfg_path = Path(tmp_path) / "c.yml"
        cfg_path.write_text(yaml.safe_dump({"db": store.config.db}))
        env = {**os.environ, "QOS_SCOUT_MASTER_KEYS": f"{key2},{key1}"}
        exe = Path(sys.executable).parent / "qos-scout"
        out = subprocess.run(
            [str(exe), "collector", "rotate-secrets", "--config", str(cfg_path), "--json"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"rotated": 2}
        with store.read() as c:
            sealed = [r.secret for r in c.execute(sa.select(partner_channels))]
        for token in sealed:
            secrets = json.loads(Fernet(key2.encode()).decrypt(token.encode()))
            assert secrets["private_key"] == "privkey-1"
        with store.read() as c:
            assert c.execute(sa.select(external_tickets.c.external_id)).scalar() == str(tid)
    finally:
        fake.close()
        other.close()


def test_channel_input_is_checked_with_reasons(make_store, serve):
    key = Fernet.generate_key().decode()
    srv = serve(make_store(channels={"master_keys": [key]}), background=False)
    acme = new_tenant(srv, "acme")
    slack = {"type": "slack", "name": "s", "url": "https://hooks.slack.com/services/T/B/X"}
    cases = [
        ({**slack, "url": "http://hooks.slack.com/x"}, "must be https://"),
        ({**slack, "url": "https://127.0.0.1/x"}, "private, loopback or reserved"),
        ({**slack, "url": "https://[::1]/x"}, "private, loopback or reserved"),
        ({**slack, "url": "https://10.1.2.3/x"}, "private, loopback or reserved"),
        ({**slack, "url": "https://u:p@hooks.slack.com/x"}, "must not carry a user"),
        ({**slack, "url": "ftp://hooks.slack.com/x"}, "https:// URL"),
        ({**slack, "routing": {"customers": ["nope"]}}, "customer nope not found"),
    ]
    for body, reason in cases:
        r = acme.partner.post("/api/v1/channels", json=body)
        assert r.status_code == 422 and reason in r.json()["detail"], (body, r.text)
    r = acme.partner.post("/api/v1/channels", json={**slack, "type": "fax"})
    assert r.status_code == 422
    pd = {"type": "pagerduty", "name": "pd", "routing_key": "short"}
    assert acme.partner.post("/api/v1/channels", json=pd).status_code == 422
    ok = acme.partner.post("/api/v1/channels", json=slack)
    assert ok.status_code == 201 and ok.json()["url"] == "********"
    assert acme.partner.post("/api/v1/channels", json=slack).status_code == 409  # same name
    cid = ok.json()["id"]
    r = acme.partner.patch(f"/api/v1/channels/{cid}", json={"type": "teams"})
    assert r.status_code == 422 and "type cannot change" in r.text
    r = acme.partner.put(f"/api/v1/channels/{cid}/mappings/{acme.customer_id}",
                         json={"company": "x"})  # fmt: skip
    assert r.status_code == 422 and "takes no PSA mapping" in r.text
    # The master key lost: the channel stays, its credentials must be given again.
    lost = serve(make_store(channels={"master_keys": [Fernet.generate_key().decode()]}),
                 background=False)  # fmt: skip
    again = httpx.Client(base_url=lost.url, headers=acme.partner.headers)
    r = again.patch(f"/api/v1/channels/{cid}", json={"enabled": False})
    assert r.status_code == 422 and "url" in r.json()["detail"], r.text
    r = again.post(f"/api/v1/channels/{cid}/test")
    assert r.json() == {"ok": False, "error": "the channel's secrets were encrypted with a "
                        "master key no longer configured"}  # fmt: skip
    r = again.patch(f"/api/v1/channels/{cid}", json={"url": slack["url"] + "2"})
    assert r.status_code == 200, r.text
    assert acme.partner.delete(f"/api/v1/channels/{cid}").status_code == 204
    assert acme.partner.get(f"/api/v1/channels/{cid}").status_code == 404


def test_without_a_master_key_no_credentials_are_stored(make_store, serve):
    srv = serve(make_store(), background=False)
    acme = new_tenant(srv, "acme")
    slack = {"type": "slack", "name": "s", "url": "https://hooks.slack.com/services/T/B/X"}
    r = acme.partner.post("/api/v1/channels", json=slack)
    assert r.status_code == 409 and "master key" in r.json()["detail"]


# One backend (the one replicas share) keeps the suite's time; the storage it relies on is
# run on both above.
ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"
SERVICES = ("connectwise", "autotask", "halo", "teams", "slack", "pagerduty")


def _service(kind: str) -> tuple[Fake, dict[str, object], dict[str, object] | None]:
    """The contract fake of a service, the channel that reaches it, the PSA mapping."""
    if kind == "connectwise":
        cw = ConnectWiseFake("qscorp", "pubkey-1", "privkey-1", "cid-1")
        return cw, _cw(cw), {"company": "ACME-CORP"}
    if kind == "autotask":
        at = AutotaskFake("api@acme.example", "INTCODE", "s3cret")
        return at, {"type": "autotask", "name": "at", "zone_url": at.zone_url,
                    "username": "api@acme.example", "integration_code": "INTCODE",
                    "secret": "s3cret", "queue_id": 8}, {"company_id": 174}  # fmt: skip
    if kind == "halo":
        h = HaloFake("halo-client", "halo-secret")
        return h, {"type": "halo", "name": "halo", "api_url": h.url, "auth_url": f"{h.url}/auth",
                   "client_id": "halo-client", "client_secret": "halo-secret",
                   "status_closed": 9}, {"client_id": 12, "site_id": 34}  # fmt: skip
    if kind == "pagerduty":
        pd = PagerDutyFake(ROUTING_KEY)
        return pd, {"type": "pagerduty", "name": "pd", "url": pd.enqueue,
                    "routing_key": ROUTING_KEY}, None  # fmt: skip
    hook = TeamsFake() if kind == "teams" else SlackFake()
    return hook, {"type": kind, "name": kind, "url": hook.hook}, None


def _chat(fake: Fake) -> list[tuple[str, str]]:
    """(event word, delivery id) of each Teams card or Slack message received, in order."""
    out = []
    if isinstance(fake, TeamsFake):
        for c in fake.cards:
            facts = {f["title"]: f["value"] for f in c["body"][2]["facts"]}
            out.append((c["body"][0]["text"].rsplit("— ", 1)[1].split()[0], facts["Delivery"]))
    else:
        assert isinstance(fake, SlackFake)
        for m in fake.messages:
            fields = dict(f["text"].split("\n", 1) for f in m["blocks"][2]["fields"])
            word = m["blocks"][0]["text"]["text"].rsplit("— ", 1)[1].split()[0]
            out.append((word, fields["*Delivery*"]))
    return out


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_collector_killed_between_create_and_answer_loses_and_doubles_nothing(
    db_url, tmp_path, make_store
):
    """For each service in turn, a real collector process is SIGKILLed while the service
    holds the answer to the create (the PSA ticket, the chat message, the PagerDuty
    trigger); the next process finds the outbox row due again. A PSA is searched by the
    ticket's reference and the ticket made is found, never made twice; PagerDuty takes the
    repeated trigger into its one incident (dedup key); Teams and Slack, which cannot tell
    a repeat, get the in-flight message once more with the same delivery id and nothing
    else twice. Then the comment and the resolve reach every service once."""
    cfg = {
        "db": db_url, "rules": RULES, "log_level": "warning",
        "outbox": {"poll_interval_s": 0.1, "retry_base_s": 0.2, "retry_max_s": 0.5,
                   "lease_s": 3},
        "channels": {"master_keys": [Fernet.generate_key().decode()],
                     "allow_hosts": ["127.0.0.1"], "timeout_s": 2},
    }  # fmt: skip
    cfg_path = Path(tmp_path) / "collector.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    fakes: dict[str, Fake] = {}
    proc = start_collector(port, "--config", str(cfg_path))
    try:
        store = make_store()
        srv = LiveServer.__new__(LiveServer)
        srv.store, srv.url = store, f"http://127.0.0.1:{port}"
        tenants = {}
        for kind in SERVICES:  # a partner each: every ticket reaches one service
            t = tenants[kind] = new_tenant(srv, f"p-{kind}")
            fake, body, mapping = _service(kind)
            fakes[kind] = fake
            ch = t.partner.post("/api/v1/channels", json=body)
            assert ch.status_code == 201, ch.text
            if mapping:
                r = t.partner.put(f"/api/v1/channels/{ch.json()['id']}/mappings/{t.customer_id}",
                                  json=mapping)  # fmt: skip
                assert r.status_code == 200, r.text
            fake.hang_next_create = True
        for t in tenants.values():
            t.post(icmp(300))

        def held() -> list[str]:  # a create made, its answer held (the fake flips the flag)
            return [
                k for k, f in fakes.items() if not f.hang_next_create and not f.released.is_set()
            ]

        for _ in SERVICES:  # one row after the other: each delivery dies mid-create
            [kind] = wait_for(held, 30, "a create held by its service")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            fakes[kind].released.set()
            proc = start_collector(port, "--config", str(cfg_path))

        def rows() -> list[str]:  # a fresh connection each time
            with store.read() as c:
                return [r.state for r in c.execute(sa.select(outbox))]

        wait_for(lambda: rows() == ["sent"] * len(SERVICES), 30, "every create delivered")
        for t in tenants.values():
            tid = t.partner.get("/api/v1/tickets").json()[0]["id"]
            t.partner.post(f"/api/v1/tickets/{tid}/comments", json={"message": "on it"})
            t.post(icmp(10))
        wait_for(lambda: rows() == ["sent"] * 3 * len(SERVICES), 30,
                 "the comments and the resolves delivered")  # fmt: skip
        with store.read() as c:
            links = {r.channel_id: (r.state, r.external_id) for r in c.execute(
                sa.select(external_tickets))}  # fmt: skip
        for kind, fake in fakes.items():
            assert fake.refusals == [], (kind, fake.refusals)
            assert [c.status for c in fake.calls].count(-1) == 1, kind  # the held create
        cw = fakes["connectwise"]
        assert isinstance(cw, ConnectWiseFake) and len(cw.tickets) == 1
        ext = next(iter(cw.tickets))
        assert cw.ok_calls() == [
            ("GET", "/v4_6_release/apis/3.0/service/tickets"),  # the search after the restart
            ("POST", f"/v4_6_release/apis/3.0/service/tickets/{ext}/notes"),
            ("POST", f"/v4_6_release/apis/3.0/service/tickets/{ext}/notes"),
            ("PATCH", f"/v4_6_release/apis/3.0/service/tickets/{ext}"),
        ]
        assert cw.tickets[ext]["status"] == {"name": "Closed"}
        at = fakes["autotask"]
        assert isinstance(at, AutotaskFake) and len(at.tickets) == 1
        ext_at = next(iter(at.tickets))
        assert [c for c in at.ok_calls() if "zoneInformation" not in c[1]] == [
            ("GET", "/atservicesrest/V1.0/Tickets/query"),
            ("POST", f"/atservicesrest/V1.0/Tickets/{ext_at}/Notes"),
            ("POST", f"/atservicesrest/V1.0/Tickets/{ext_at}/Notes"),
            ("PATCH", "/atservicesrest/V1.0/Tickets"),
        ]
        assert at.tickets[ext_at]["status"] == 5 and len(at.notes[ext_at]) == 2
        halo = fakes["halo"]
        assert isinstance(halo, HaloFake) and len(halo.tickets) == 1
        ext_h = next(iter(halo.tickets))
        assert [c for c in halo.ok_calls() if c[1] != "/auth/token"] == [
            ("GET", "/api/Tickets"), ("POST", "/api/Actions"), ("POST", "/api/Actions"),
            ("POST", "/api/Tickets"),
        ]  # fmt: skip
        assert halo.tickets[ext_h]["status_id"] == 9 and len(halo.actions[ext_h]) == 2
        assert sorted(links.values()) == sorted(
            [("closed", str(ext)), ("closed", str(ext_at)), ("closed", str(ext_h))]
        )
        for kind in ("teams", "slack"):
            got = _chat(fakes[kind])
            # At least once: the message in flight twice, with one delivery id; the rest once.
            assert [w for w, _ in got] == ["opened", "opened", "commented", "resolved"], kind
            assert got[0][1] == got[1][1] and len({d for _, d in got}) == 3, got
        pd = fakes["pagerduty"]
        assert isinstance(pd, PagerDutyFake)
        assert [c.json()["event_action"] for c in pd.calls] == ["trigger", "trigger", "resolve"]
        [incident] = pd.incidents.values()  # the repeated trigger joined the one incident
        assert pd.opened == 1 and incident == {"number": 1, "status": "resolved", "alerts": 2}
    finally:
        proc.terminate()
        proc.wait(10)
        for fake in fakes.values():
            fake.close()
