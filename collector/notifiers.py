"""Notification channels: a signed JSON webhook, e-mail over SMTP, Alertmanager v2.

Each sender raises DeliveryError with a readable reason; the outbox retries it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

import httpx

from collector.config import AlertmanagerChannel, SmtpChannel, WebhookChannel

SIGNATURE_HEADER = "X-QoS-Scout-Signature"


class DeliveryError(Exception):
    """One delivery attempt failed (the outbox will retry)."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check(resp: httpx.Response, what: str) -> None:
    if resp.status_code // 100 != 2:
        raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}")


def send_webhook(ch: WebhookChannel, payload: dict[str, Any], delivery_id: int) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "X-QoS-Scout-Delivery": str(delivery_id),
        "X-QoS-Scout-Event": str(payload.get("event", "")),
    }
    if ch.secret:
        headers[SIGNATURE_HEADER] = sign(ch.secret, body)
    try:
        resp = httpx.post(ch.url, content=body, headers=headers, timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook {ch.url}: {exc!r}") from None
    _check(resp, f"webhook {ch.url}")


def _subject(payload: dict[str, Any]) -> str:
    t = payload.get("ticket", {})
    return f"[qos-scout] {payload.get('event', '')} {t.get('severity', '')}: {t.get('title', '')}"


def _text(payload: dict[str, Any]) -> str:
    t = payload.get("ticket", {})
    lines = [f"Ticket {payload.get('event', '')} at {payload.get('at', '')}", ""]
    lines += [f"{k}: {v}" for k, v in t.items()]
    return "\n".join(lines) + "\n"


def send_email(ch: SmtpChannel, payload: dict[str, Any], delivery_id: int) -> None:
    msg = EmailMessage()
    msg["From"] = ch.sender
    msg["To"] = ", ".join(ch.to)
    msg["Subject"] = _subject(payload)
    msg["X-QoS-Scout-Delivery"] = str(delivery_id)
    msg.set_content(_text(payload))
    try:
        with smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s) as smtp:
            if ch.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if ch.username:
                smtp.login(ch.username, ch.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp {ch.host}:{ch.port}: {exc!r}") from None


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
    try:
        resp = httpx.post(url, json=[alert_for(p) for p in payloads], timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"alertmanager {url}: {exc!r}") from None
    _check(resp, f"alertmanager {url}")


def deliver(ch: Any, payload: dict[str, Any], delivery_id: int) -> None:
    if isinstance(ch, WebhookChannel):
        send_webhook(ch, payload, delivery_id)
    elif isinstance(ch, SmtpChannel):
        send_email(ch, payload, delivery_id)
    elif isinstance(ch, AlertmanagerChannel):
        send_alertmanager(ch, payload, delivery_id)
    else:  # pragma: no cover - the config union is closed
        raise DeliveryError(f"unknown channel type {type(ch).__name__}")
