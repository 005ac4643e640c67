"""Chat and paging for partner channels: Microsoft Teams (Workflows webhook, Adaptive
Card), Slack (incoming webhook, Block Kit with fallback text) and PagerDuty (Events API v2,
one dedup key per ticket)."""

from __future__ import annotations

from typing import Any

from collector.egress import Egress
from collector.messages import Message

ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def teams_body(m: Message) -> dict[str, Any]:
    """A Workflows webhook message: one Adaptive Card (1.4) attachment."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": m.title, "weight": "Bolder", "size": "Medium",
             "wrap": True, "color": "Attention" if m.severity == "critical" else "Warning"},
            {"type": "TextBlock", "text": m.text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in m.facts]},
        ],
        "actions": [{"type": "Action.OpenUrl", "title": "Open the ticket", "url": m.link}],
    }  # fmt: skip
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE, "contentUrl": None, "content": card}],
    }


def send_teams(eg: Egress, cfg: dict[str, Any], m: Message) -> None:
    eg.request("POST", cfg["url"], "teams", json=teams_body(m))


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(m: Message) -> dict[str, Any]:
    """Block Kit blocks plus `text`, the fallback shown in notifications."""
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)}"} for k, v in m.facts][:10]
    return {
        "text": f"{m.title} {m.link}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": m.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(m.text)[:3000]}},
            {"type": "section", "fields": fields},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open the ticket"},
                 "url": m.link},
            ]},
        ],
    }  # fmt: skip


def send_slack(eg: Egress, cfg: dict[str, Any], m: Message) -> None:
    eg.request("POST", cfg["url"], "slack", json=slack_body(m))


PD_ACTION = {
    "opened": "trigger", "reopened": "trigger", "escalated": "trigger", "test": "trigger",
    "acknowledged": "acknowledge", "resolved": "resolve",
}  # fmt: skip
PD_SEVERITY = {"critical": "critical", "warning": "warning"}


def dedup_key(ticket_id: str) -> str:
    return f"qos-scout-{ticket_id}"


def pagerduty_body(routing_key: str, m: Message) -> dict[str, Any] | None:
    """The Events API v2 event of a ticket event; None for events PagerDuty has no use for
    (comments)."""
    action = PD_ACTION.get(m.event)
    if action is None:
        return None
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(m.ticket_id),
    }
    if action == "trigger":
        body["payload"] = {
            "summary": m.title[:1024],
            "source": m.site or "qos-scout",
            "severity": PD_SEVERITY.get(m.severity, "info"),
            "component": dict(m.facts).get("Target", ""),
            "custom_details": {**dict(m.facts), "details": m.text},
        }
        body["links"] = [{"href": m.link, "text": "The ticket in qos-scout"}]
    return body


def send_pagerduty(eg: Egress, cfg: dict[str, Any], m: Message) -> None:
    body = pagerduty_body(cfg["routing_key"], m)
    if body is not None:
        eg.request("POST", cfg["url"], "pagerduty", json=body)
