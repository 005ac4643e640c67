"""Notification channels: a signed JSON webhook, e-mail over SMTP, Alertmanager v2.

Each sender raises DeliveryError with a readable reason; the outbox retries it. Channel
URLs are often secrets (a token in the path or query): no message, error or log line
carries more of them than `scheme://host:port/…` (`redact_url`), and the HTTP client's own
request log lines are redacted the same way (`RedactUrls` on the "httpx" logger).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

import httpx

from collector.config import AlertmanagerChannel, SmtpChannel, WebhookChannel

SIGNATURE_HEADER = "X-QoS-Scout-Signature"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


class DeliveryError(Exception):
    """One delivery attempt failed (the outbox will retry)."""


def redact_url(url: str | httpx.URL) -> str:
    """`scheme://host:port/…`: no userinfo, path, query or fragment (they may be secret)."""
    try:
        u = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<url>"
    if not u.scheme or not u.host:
        return "<url>"
    host = f"[{u.host}]" if ":" in u.host else u.host
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return f"{u.scheme}://{host}{f':{port}' if port else ''}/…"


def redact_text(text: str) -> str:
    """Every URL in `text` redacted (exception messages, answers that echo the URL)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class RedactUrls(logging.Filter):
    """Redacts the URLs in a record's message and arguments (the HTTP client logs every
    request with its full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def _redact_arg(a: Any) -> Any:
    if isinstance(a, httpx.URL):
        return redact_url(a)
    if isinstance(a, str | bytes):
        return redact_text(a if isinstance(a, str) else a.decode("utf-8", "replace"))
    return a


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, RedactUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(RedactUrls())


def sign(secret: str, body: bytes, delivery_id: int, now: float) -> str:
    """`t=<unix seconds>,id=<delivery id>,v1=<hex HMAC-SHA256 of "<t>.<id>.<body>">`: the
    receiver checks the MAC, that `t` is recent and that it has not seen `id` before."""
    t = int(now)
    signed = f"{t}.{delivery_id}.".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},id={delivery_id},v1={mac}"


def _check(resp: httpx.Response, what: str) -> None:
    if resp.status_code // 100 != 2:
        answer = redact_text(resp.text[:200])
        raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {answer}")


def _failed(what: str, exc: Exception) -> DeliveryError:
    return DeliveryError(f"{what}: {redact_text(repr(exc))}")


def send_webhook(ch: WebhookChannel, payload: dict[str, Any], delivery_id: int, now: float) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "X-QoS-Scout-Delivery": str(delivery_id),
        "X-QoS-Scout-Event": str(payload.get("event", "")),
    }
    if ch.secret:
        headers[SIGNATURE_HEADER] = sign(ch.secret, body, delivery_id, now)
    what = f"webhook {redact_url(ch.url)}"
    try:
        resp = httpx.post(ch.url, content=body, headers=headers, timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        raise _failed(what, exc) from None
    _check(resp, what)


def _subject(payload: dict[str, Any]) -> str:
    t = payload.get("ticket", {})
    return f"[qos-scout] {payload.get('event', '')} {t.get('severity', '')}: {t.get('title', '')}"


def _text(payload: dict[str, Any]) -> str:
    t = payload.get("ticket", {})
    lines = [f"Ticket {payload.get('event', '')} at {payload.get('at', '')}", ""]
    lines += [f"{k}: {v}" for k, v in t.items()]
    return "\n".join(lines) + "\n"


def send_email(ch: SmtpChannel, payload: dict[str, Any], delivery_id: int) -> None:
    """A ticket event to the channel's addresses; a report (`event` "report",
    collector/reports.py) to the addresses its schedule names, its PDF attached."""
    msg = EmailMessage()
    msg["From"] = ch.sender
    report = payload.get("event") == "report"
    msg["To"] = ", ".join(payload["to"] if report else ch.to)
    msg["Subject"] = payload["subject"] if report else _subject(payload)
    msg["X-QoS-Scout-Delivery"] = str(delivery_id)
    msg.set_content(payload["text"] if report else _text(payload))
    if report and payload.get("attachment"):
        att = payload["attachment"]
        msg.add_attachment(
            base64.b64decode(att["data_b64"]), maintype="application", subtype="pdf",
            filename=att["filename"],
        )  # fmt: skip
    try:
        with smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s) as smtp:
            if ch.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if ch.username:
                smtp.login(ch.username, ch.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise _failed(f"smtp {ch.host}:{ch.port}", exc) from None


def alert_for(payload: dict[str, Any]) -> dict[str, Any]:
    """Ticket event -> one Alertmanager v2 alert (resolved tickets carry `endsAt`)."""
    t = payload.get("ticket", {})
    labels = {
        "alertname": f"qos_scout_{t.get('rule', 'rule')}",
        "severity": str(t.get("severity", "")),
        "partner": str(t.get("partner", "")),
        "customer": str(t.get("customer", "")),
        "site": str(t.get("site", "")),
        "rule": str(t.get("rule", "")),
        "target": str(t.get("target", "")),
        "ticket": str(t.get("id", "")),
    }
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": str(t.get("title", "")), "state": str(t.get("state", ""))},
        "startsAt": t.get("opened_at"),
    }
    if t.get("state") == "resolved" and t.get("resolved_at"):
        alert["endsAt"] = t["resolved_at"]
    return alert


def send_alertmanager(ch: AlertmanagerChannel, payload: dict[str, Any], _id: int) -> None:
    send_alertmanager_batch(ch, [payload])


def send_alertmanager_batch(ch: AlertmanagerChannel, payloads: list[dict[str, Any]]) -> None:
    url = ch.url.rstrip("/") + "/api/v2/alerts"
    what = f"alertmanager {redact_url(url)}"
    try:
        resp = httpx.post(url, json=[alert_for(p) for p in payloads], timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        raise _failed(what, exc) from None
    _check(resp, what)


def deliver(ch: Any, payload: dict[str, Any], delivery_id: int, now: float) -> None:
    """One attempt of outbox row `delivery_id` at time `now` (a webhook signs it then). A
    report is only ever queued for e-mail channels; any other refuses it."""
    if payload.get("event") == "report" and not isinstance(ch, SmtpChannel):
        raise DeliveryError(f"channel {ch.name!r} does not send reports (not e-mail)")
    if isinstance(ch, WebhookChannel):
        send_webhook(ch, payload, delivery_id, now)
    elif isinstance(ch, SmtpChannel):
        send_email(ch, payload, delivery_id)
    elif isinstance(ch, AlertmanagerChannel):
        send_alertmanager(ch, payload, delivery_id)
    else:  # pragma: no cover - the config union is closed
        raise DeliveryError(f"unknown channel type {type(ch).__name__}")
