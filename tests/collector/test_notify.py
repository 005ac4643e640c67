"""Notifications through the outbox to real peers: webhook (HMAC over time, delivery id
and body), SMTP, Alertmanager, with retries, delivery after a restart, explicit routing
and redacted URLs in the logs. On SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from aiosmtpd.controller import Controller

from collector.schema import outbox
from collector.worker import refresh_alertmanager
from tests.collector.conftest import icmp, new_tenant
from tests.collector.peers import Alertmanager, WebhookReceiver, start_collector, wait_for
from tests.collector.pg import free_port

FAST = {"poll_interval_s": 0.1, "retry_base_s": 0.2, "retry_max_s": 1.0}
RULES = {"rtt": {"trip_after": 1, "clear_after": 1}}


def test_webhook_signed_and_retried_until_delivered(make_store, serve):
    hook = WebhookReceiver(fail_first=2)
    try:
        ch = {"type": "webhook", "url": hook.url, "secret": "s3cret", "partners": ["acme"]}
        srv = serve(make_store(notifications=[ch], outbox=FAST, rules=RULES))
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        wait_for(lambda: hook.requests, what="the webhook delivery")
        headers, body = hook.requests[0]
        sig = dict(p.split("=", 1) for p in headers["x-qos-scout-signature"].split(","))
        assert sig["id"] == headers["x-qos-scout-delivery"]
        assert abs(int(sig["t"]) - time.time()) < 60
        signed = f"{sig['t']}.{sig['id']}.".encode() + body
        assert sig["v1"] == hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
        doc = json.loads(body)
        assert doc["event"] == "opened"
        assert doc["ticket"]["rule"] == "rtt" and doc["ticket"]["partner"] == "acme"
        assert hook.calls == 3  # two 500s, then delivered
        t.post(icmp(10))
        wait_for(lambda: len(hook.requests) == 2, what="the resolved notification")
        assert hook.events()[1]["event"] == "resolved"
        text = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers).text
        assert 'qos_scout_notifications_total{channel="webhook",status="failed"} 2.0' in text
        assert 'qos_scout_notifications_total{channel="webhook",status="sent"} 2.0' in text
    finally:
        hook.close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        text = envelope.content.decode("utf8", errors="replace")
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), text))
        return "250 Message accepted for delivery"


def test_email_through_a_real_smtp_server(make_store, serve):
    inbox = _Inbox()
    port = free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    try:
        ch = {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "from": "noc@example.net",
            "to": ["ops@example.net", "t1@example.net"],
            "scope": "operator",
        }
        srv = serve(make_store(notifications=[ch], outbox=FAST, rules=RULES))
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        wait_for(lambda: inbox.messages, what="the e-mail")
        sender, rcpts, text = inbox.messages[0]
        assert sender == "noc@example.net"
        assert rcpts == ["ops@example.net", "t1@example.net"]
        msg = email.message_from_string(text, policy=email.policy.default)
        assert msg["Subject"].strip() == (
            "[qos-scout] opened warning: acme-hq: round-trip time too high (192.0.2.1)"
        )
        assert "rule: rtt" in msg.get_content()
    finally:
        smtpd.stop()


def test_alertmanager_receives_and_resolves_the_alert(make_store, serve):
    binary = Alertmanager.binary()
    if binary is None:
        pytest.skip("prometheus-alertmanager is not installed (Debian prometheus-alertmanager)")
    am = Alertmanager(binary)
    try:
        ch = {"type": "alertmanager", "url": am.url, "scope": "operator"}
        srv = serve(make_store(notifications=[ch], outbox=FAST, rules=RULES))
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        alerts = wait_for(am.alerts, what="the alert in Alertmanager")
        [a] = alerts
        tid = t.partner.get("/api/v1/tickets").json()[0]["id"]
        assert a["labels"]["alertname"] == "qos_scout_rtt"
        assert a["labels"]["ticket"] == tid and a["labels"]["severity"] == "warning"
        assert a["labels"]["site"] == "acme-hq" and a["status"]["state"] == "active"
        # The periodic refresh re-sends open tickets (the same alert, still one).
        assert refresh_alertmanager(srv.state) == 1
        assert [x["labels"]["ticket"] for x in am.alerts()] == [tid]
        t.post(icmp(10))
        wait_for(lambda: not am.alerts(), what="the alert to resolve")
    finally:
        am.close()


def test_pending_notification_delivered_after_collector_restart(db_url, tmp_path, make_store):
    hook_port = free_port()  # nothing listens yet: the first attempts fail
    cfg = {
        "db": db_url,
        "rules": RULES,
        "outbox": {**FAST, "retry_max_s": 0.5},
        "notifications": [
            {"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook", "partners": ["acme"]}
        ],
        "log_level": "warning",
    }
    cfg_path = tmp_path / "collector.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = start_collector(port, "--config", str(cfg_path))
    hook = None
    try:
        store = make_store()
        from tests.collector.conftest import LiveServer  # admin objects via the same DB

        srv = LiveServer.__new__(LiveServer)
        srv.store, srv.url = store, f"http://127.0.0.1:{port}"
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        from collector.outbox import pending_count

        def failed_once() -> bool:
            with store.read() as c:
                row = c.exec_driver_sql("SELECT attempts FROM outbox").first()
            return bool(row and row[0] >= 1)

        wait_for(failed_once, what="a failed first attempt")
        os.kill(proc.pid, signal.SIGKILL)  # crash: no graceful shutdown
        proc.wait(10)
        with store.read() as c:
            assert pending_count(c) == 1
        hook = WebhookReceiver(port=hook_port)
        proc = start_collector(port, "--config", str(cfg_path))
        wait_for(lambda: hook.requests, 30, "delivery after the restart")
        assert hook.events()[0]["event"] == "opened"

        def pending() -> int:  # a fresh connection each time: a new snapshot on SQLite
            with store.read() as c:
                return pending_count(c)

        wait_for(lambda: pending() == 0, what="the outbox to drain")
    finally:
        proc.terminate()
        proc.wait(10)
        if hook:
            hook.close()


def test_lease_expiry_redelivers_a_claimed_but_unconfirmed_row(make_store, serve):
    from collector.api.state import AppState
    from collector.evaluation import RuleBook
    from collector.outbox import claim_due
    from collector.worker import deliver_due

    hook = WebhookReceiver()
    try:
        now = [time.time()]  # results start near now: inside the accepted window
        ch = {"type": "webhook", "url": hook.url, "scope": "operator"}
        store = make_store(notifications=[ch], outbox={**FAST, "lease_s": 30}, rules=RULES)
        srv = serve(store, clock=lambda: now[0], background=False)
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        with store.write() as c:  # a delivery loop claims the row, then its process dies
            assert len(claim_due(c, store.config.outbox, now[0])) == 1
        st = AppState(store=store, book=RuleBook(store.config), clock=lambda: now[0])
        assert deliver_due(st) == 0  # leased: nobody else may take it yet
        now[0] += 31
        assert deliver_due(st) == 1
        assert [e["event"] for e in hook.events()] == ["opened"]
    finally:
        hook.close()


def test_each_channel_receives_only_the_partners_it_names_or_all_as_operator(make_store, serve):
    """Two partners; a webhook and an Alertmanager for one each, an e-mail channel for the
    other, an operator webhook for both: each event reaches exactly the channels routed."""
    inbox, port = _Inbox(), free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    acme_hook, noc_hook, globex_am = WebhookReceiver(), WebhookReceiver(), WebhookReceiver()
    try:
        channels = [
            {"type": "webhook", "name": "acme-psa", "url": acme_hook.url, "partners": ["acme"]},
            {"type": "webhook", "name": "noc", "url": noc_hook.url, "scope": "operator"},
            {"type": "email", "name": "globex-mail", "host": "127.0.0.1", "port": port,
             "from": "noc@example.net", "to": ["ops@globex.example"], "partners": ["globex"]},
            {"type": "alertmanager", "name": "globex-am", "url": globex_am.url,
             "partners": ["globex", "initech"]},
        ]  # fmt: skip
        store = make_store(notifications=channels, outbox=FAST, rules=RULES)
        srv = serve(store)
        acme, globex = new_tenant(srv, "acme"), new_tenant(srv, "globex")
        acme.post(icmp(300))
        globex.post(icmp(300))
        with store.read() as c:
            rows = {(r.channel, r.partner_id) for r in c.execute(sa.select(outbox))}
        assert rows == {
            ("acme-psa", acme.partner_id), ("noc", acme.partner_id),
            ("noc", globex.partner_id), ("globex-mail", globex.partner_id),
            ("globex-am", globex.partner_id)}  # fmt: skip
        wait_for(lambda: len(noc_hook.requests) == 2, what="both events on the operator hook")
        wait_for(lambda: inbox.messages and globex_am.requests, what="globex's e-mail and alert")
        assert [e["ticket"]["partner"] for e in acme_hook.events()] == ["acme"]
        assert sorted(e["ticket"]["partner"] for e in noc_hook.events()) == ["acme", "globex"]
        assert "partner: globex" in inbox.messages[0][2] and len(inbox.messages) == 1
        [alerts] = [json.loads(b) for _, b in globex_am.requests]
        assert [a["labels"]["partner"] for a in alerts] == ["globex"]
        # The periodic re-send of open tickets to Alertmanager is routed the same way.
        assert refresh_alertmanager(srv.state) == 1
        assert [a["labels"]["partner"] for a in json.loads(globex_am.requests[-1][1])] == ["globex"]
    finally:
        smtpd.stop()
        for h in (acme_hook, noc_hook, globex_am):
            h.close()


def _documented_verifier() -> type:
    """The webhook verification snippet of docs/collector.md, as the docs print it."""
    doc = (Path(__file__).parents[2] / "docs" / "collector.md").read_text()
    section = doc.split("### Verifying a webhook", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/collector.md", "exec"), ns)
    return ns["WebhookVerifier"]  # type: ignore[return-value]


def test_the_documented_snippet_verifies_a_real_delivery_and_rejects_replays(make_store, serve):
    hook = WebhookReceiver(fail_first=1)
    try:
        ch = {"type": "webhook", "url": hook.url, "secret": "s3cret", "partners": ["acme"]}
        srv = serve(make_store(notifications=[ch], outbox=FAST, rules=RULES))
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        wait_for(lambda: hook.requests, what="the webhook delivery (after one retry)")
        headers, body = hook.requests[0]
        header = headers["x-qos-scout-signature"]
        fields = dict(p.split("=", 1) for p in header.split(","))
        assert fields["id"] == headers["x-qos-scout-delivery"]
        Verifier = _documented_verifier()
        v = Verifier(b"s3cret")
        assert v.verify(header, body) is True  # a new delivery: process it
        assert v.verify(header, body) is False  # the same id again: a replay, not processed
        with pytest.raises(ValueError, match="signature mismatch"):
            v.verify(header, body.replace(b"acme", b"evil"))
        with pytest.raises(ValueError, match="signature mismatch"):  # id is under the MAC
            Verifier(b"s3cret").verify(header.replace(f"id={fields['id']}", "id=999"), body)
        with pytest.raises(ValueError, match="signature mismatch"):  # so is t
            t_late = f"t={int(fields['t']) + 600}"
            Verifier(b"s3cret").verify(header.replace(f"t={fields['t']}", t_late), body)
        with pytest.raises(ValueError, match="outside the 300 s window"):
            Verifier(b"s3cret").verify(header, body, now=int(fields["t"]) + 301)
        with pytest.raises(ValueError, match="signature mismatch"):
            Verifier(b"other").verify(header, body)
        with pytest.raises(ValueError, match="malformed"):
            Verifier(b"s3cret").verify("sha256=" + fields["v1"], body)
        t.post(icmp(10))  # resolved: a new delivery id, accepted by the same receiver
        wait_for(lambda: len(hook.requests) == 2, what="the resolved notification")
        h2, b2 = hook.requests[1]
        assert h2["x-qos-scout-delivery"] != fields["id"]
        assert v.verify(h2["x-qos-scout-signature"], b2) is True
    finally:
        hook.close()


def test_channel_urls_are_never_logged_whole(db_url, tmp_path, make_store):
    """A real collector process at log level debug delivers to a webhook and an
    Alertmanager whose URLs carry secrets, and fails to reach two more: its log holds
    scheme://host:port/… for each, never a user, password, path or query."""
    hook, am = WebhookReceiver(fail_first=1), WebhookReceiver()
    dead = free_port()
    secret_urls = [
        f"http://hookuser:SECRET-pw@127.0.0.1:{hook.port}/hooks/SECRET-path?token=SECRET-q",
        f"http://127.0.0.1:{am.port}/SECRET-am-path",
        f"http://127.0.0.1:{dead}/dead/SECRET-dead?key=SECRET-dq",
        f"https://user:SECRET-tls@127.0.0.1:{dead}/SECRET-am2",
    ]
    cfg = {
        "db": db_url,
        "rules": RULES,
        "log_level": "debug",
        "outbox": {**FAST, "retry_max_s": 0.5},
        "notifications": [
            {"type": "webhook", "name": "psa", "url": secret_urls[0], "secret": "k",
             "partners": ["acme"]},
            {"type": "alertmanager", "name": "am", "url": secret_urls[1], "scope": "operator"},
            {"type": "webhook", "name": "gone", "url": secret_urls[2], "scope": "operator"},
            {"type": "alertmanager", "name": "am2", "url": secret_urls[3], "scope": "operator"},
        ],
    }  # fmt: skip
    (tmp_path / "collector.yml").write_text(yaml.safe_dump(cfg))
    log_path = tmp_path / "collector.log"
    port = free_port()
    store = make_store()
    from tests.collector.conftest import LiveServer  # admin objects via the same DB

    with open(log_path, "wb") as log:
        exe = Path(sys.executable).parent / "qos-scout"
        proc = subprocess.Popen(
            [str(exe), "collector", "serve", "--config", str(tmp_path / "collector.yml"),
             "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        wait_for(lambda: _ready(port, proc), 60, "the collector to start")
        srv = LiveServer.__new__(LiveServer)
        srv.store, srv.url = store, f"http://127.0.0.1:{port}"
        t = new_tenant(srv, "acme")
        t.post(icmp(300))

        def attempts() -> dict[str, int]:  # a fresh connection each time (SQLite snapshot)
            with store.read() as c:
                return {r.channel: r.attempts for r in c.execute(sa.select(outbox))}

        wait_for(lambda: hook.requests and am.requests, what="the two deliveries")
        wait_for(lambda: min(attempts()[ch] for ch in ("gone", "am2")) >= 2,
                 what="two failed attempts to each unreachable channel")  # fmt: skip
        with store.read() as c:
            errors = [r.last_error for r in c.execute(sa.select(outbox))]
    finally:
        proc.terminate()
        proc.wait(10)
        hook.close()
        am.close()
    text = log_path.read_text()
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    assert any(x["level"] == "debug" for x in lines)  # every level was on
    assert "SECRET" not in text and "hookuser" not in text
    assert not [e for e in errors if "SECRET" in e or "user" in e]
    # What is logged instead: the redacted URLs, at info (the HTTP client's request line)
    # and at warning (a failed attempt), and in the stored error.
    msgs = "\n".join(x["msg"] for x in lines)
    assert f"HTTP Request: POST http://127.0.0.1:{hook.port}/… " in msgs
    assert f"webhook http://127.0.0.1:{dead}/…: ConnectError" in msgs
    assert f"alertmanager https://127.0.0.1:{dead}/…: ConnectError" in msgs
    assert any(f"http://127.0.0.1:{dead}/…" in e for e in errors)
    # An operator channel says so when the collector starts; a partner's channel does not.
    for name in ("am", "gone", "am2"):
        assert f"notification channel {name} receives every partner's ticket events" in msgs
    assert "notification channel psa receives" not in msgs


def _ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"collector exited with {proc.returncode}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
