"""Notifications through the outbox to real peers: webhook (HMAC), SMTP, Alertmanager,
with retries, and delivery after a restart. On SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import os
import signal

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller

from collector.worker import refresh_alertmanager
from tests.collector.conftest import icmp, new_tenant
from tests.collector.peers import Alertmanager, WebhookReceiver, start_collector, wait_for
from tests.collector.pg import free_port

FAST = {"poll_interval_s": 0.1, "retry_base_s": 0.2, "retry_max_s": 1.0}
RULES = {"rtt": {"trip_after": 1, "clear_after": 1}}


def test_webhook_signed_and_retried_until_delivered(make_store, serve):
    hook = WebhookReceiver(fail_first=2)
    try:
        ch = {"type": "webhook", "url": hook.url, "secret": "s3cret"}
        srv = serve(make_store(notifications=[ch], outbox=FAST, rules=RULES))
        t = new_tenant(srv, "acme")
        t.post(icmp(300))
        wait_for(lambda: hook.requests, what="the webhook delivery")
        headers, body = hook.requests[0]
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-qos-scout-signature"] == expected
        doc = json.loads(body)
        assert doc["event"] == "opened"
        assert doc["ticket"]["rule"] == "rtt" and doc["ticket"]["partner"] == "acme"
        assert hook.calls == 3  # two 500s, then delivered
        t.post(icmp(10))
        wait_for(lambda: len(hook.requests) == 2, what="the resolved notification")
        assert hook.events()[1]["event"] == "resolved"
        text = httpx.get(f"{srv.url}/metrics").text
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
        ch = {"type": "alertmanager", "url": am.url}
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
        "notifications": [{"type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}],
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
        now = [1_900_000_000.0]
        ch = {"type": "webhook", "url": hook.url}
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
