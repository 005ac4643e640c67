"""What a partner channel says about a ticket event: one function builds it for every
service (PSA ticket and note, Teams card, Slack blocks, PagerDuty summary), so the brand a
partner chooses is applied in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.rules import field_value

EVENT_WORDS = {
    "opened": "opened", "reopened": "reopened (flapped)", "escalated": "escalated",
    "acknowledged": "acknowledged", "resolved": "resolved", "comment": "commented",
    "test": "test message",
}  # fmt: skip


@dataclass(frozen=True)
class Message:
    event: str
    ticket_id: str
    severity: str
    title: str  # one line
    text: str  # the body: what happened, the evidence, the link
    facts: list[tuple[str, str]] = field(default_factory=list)
    link: str = ""
    sender: str = ""  # whose message (the partner's name; their brand later)
    site: str = ""
    delivery: str = ""  # the outbox row: the same on every attempt of one delivery


def ticket_link(portal_url: str, ticket_id: str) -> str:
    return f"{portal_url.rstrip('/')}/ui/tickets/{ticket_id}"


def evidence_summary(evidence: dict[str, Any], limit: int = 5) -> str:
    """The rule and the figures that tripped it, a few lines of plain text."""
    rule = evidence.get("rule") or {}
    field_ = rule.get("field")
    lines = []
    if rule:
        bounds = ", ".join(
            f"{level} {rule.get('op', '')} {rule[level]:g}"
            for level in ("warning", "critical")
            if isinstance(rule.get(level), int | float)
        )
        what = f"{field_}: {bounds}" if field_ and bounds else ""
        lines.append(f"Rule {rule.get('id', '')} ({rule.get('description', '')}) {what}".strip())
    for r in (evidence.get("results") or [])[-limit:]:
        err = r.get("error") or {}
        if not r.get("success"):
            state = f"failed ({err.get('category', 'error')}): {err.get('message', '')}"
        else:
            value = field_value(r.get("measurement"), field_) if field_ else None
            state = f"{field_} = {value:g}" if isinstance(value, int | float) else "ok"
        lines.append(f"- {r.get('started_at')} {r.get('probe')} {r.get('target')}: {state}")
    return "\n".join(lines)


def build_message(
    payload: dict[str, Any], sender: str, portal_url: str, delivery: str = ""
) -> Message:
    """The message of one ticket event (an outbox payload, see tickets._notify). A chat
    message shows its `delivery` id: a repeat after a lost answer carries the same one."""
    t = payload.get("ticket", {})
    event = str(payload.get("event", ""))
    tid = str(t.get("id", ""))
    link = ticket_link(portal_url, tid) if tid else portal_url
    word = EVENT_WORDS.get(event, event)
    title = f"[{t.get('severity', '')}] {t.get('title', '')} — {word}"
    parts = [f"Ticket {word} at {payload.get('at', '')} ({sender})."]
    if payload.get("message"):
        parts.append(str(payload["message"]))
    if payload.get("evidence"):
        parts.append(str(payload["evidence"]))
    parts.append(f"Details: {link}")
    facts = [
        ("Customer", str(t.get("customer", ""))), ("Site", str(t.get("site", ""))),
        ("Rule", str(t.get("rule", ""))), ("Target", str(t.get("target", ""))),
        ("Severity", str(t.get("severity", ""))), ("State", str(t.get("state", ""))),
    ]  # fmt: skip
    if t.get("reopen_count"):
        facts.append(("Reopened", f"{t['reopen_count']} times"))
    if delivery:
        facts.append(("Delivery", delivery))
    return Message(
        event=event, ticket_id=tid, severity=str(t.get("severity", "")), title=title[:250],
        text="\n\n".join(parts), facts=facts, link=link, sender=sender,
        site=str(t.get("site", "")), delivery=delivery,
    )  # fmt: skip
