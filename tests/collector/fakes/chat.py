"""Contract fakes of chat and paging: a Teams Workflows webhook (an Adaptive Card 1.4+
message), a Slack incoming webhook (Block Kit limits, `text` fallback) and PagerDuty's
Events API v2 (routing key, trigger/acknowledge/resolve by dedup key; acknowledging or
resolving an unknown key changes nothing)."""

from __future__ import annotations

from typing import Any

from tests.collector.fakes.base import Call, Fake, Refused, json_body, need


class TeamsFake(Fake):
    PATH = "/workflows/abc123/triggers/manual/paths/invoke"

    def __init__(self) -> None:
        self.cards: list[dict[str, Any]] = []
        super().__init__()

    @property
    def hook(self) -> str:
        return f"{self.url}{self.PATH}?sig=s3cr3tsig"

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.method != "POST" or call.path != self.PATH or call.query.get("sig") != "s3cr3tsig":
            raise Refused(404, "no such workflow")
        msg = json_body(call)
        need(msg, "type", "attachments")
        if msg["type"] != "message" or len(msg["attachments"]) != 1:
            raise Refused(400, "a message with one attachment expected")
        att = msg["attachments"][0]
        if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
            raise Refused(400, "the attachment must be an Adaptive Card")
        card = att.get("content") or {}
        if card.get("type") != "AdaptiveCard" or float(card.get("version", "0")) < 1.4:
            raise Refused(400, "an AdaptiveCard of version 1.4 or later expected")
        if not card.get("body"):
            raise Refused(400, "the card has no body")
        self.cards.append(card)
        self.created()
        return 202, b""


class SlackFake(Fake):
    PATH = "/services/T000/B000/XXXXXXXX"

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__()

    @property
    def hook(self) -> str:
        return self.url + self.PATH

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.method != "POST" or call.path != self.PATH:
            raise Refused(404, "no_service")
        msg = json_body(call)
        if not isinstance(msg, dict) or not msg.get("text"):
            raise Refused(400, "no_text")
        blocks = msg.get("blocks", [])
        if len(blocks) > 50:
            raise Refused(400, "invalid_blocks")
        for b in blocks:
            if b.get("type") == "header" and (
                b["text"].get("type") != "plain_text" or len(b["text"]["text"]) > 150
            ):
                raise Refused(400, "invalid_blocks")
            if b.get("type") == "section" and (
                len((b.get("text") or {}).get("text", "")) > 3000 or len(b.get("fields", [])) > 10
            ):
                raise Refused(400, "invalid_blocks")
        self.messages.append(msg)
        self.created()
        return 200, b"ok"


class PagerDutyFake(Fake):
    def __init__(self, routing_key: str) -> None:
        self.routing_key = routing_key
        self.incidents: dict[str, dict[str, Any]] = {}  # dedup key -> the latest incident
        self.opened = 0
        self.noops = 0
        super().__init__()

    @property
    def enqueue(self) -> str:
        return self.url + "/v2/enqueue"

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.method != "POST" or call.path != "/v2/enqueue":
            raise Refused(404, "not found")
        e = json_body(call)
        need(e, "routing_key", "event_action")
        if len(e["routing_key"]) != 32:
            raise Refused(400, "Length of 'routing_key' is incorrect (should be 32 characters)")
        if e["routing_key"] != self.routing_key:
            raise Refused(400, "unknown routing_key (no such integration)")
        action, key = e["event_action"], e.get("dedup_key")
        if action == "trigger":
            need(e, "payload")
            need(e["payload"], "summary", "source", "severity")
            if e["payload"]["severity"] not in ("critical", "error", "warning", "info"):
                raise Refused(400, "payload.severity must be critical, error, warning or info")
            cur = self.incidents.get(key or "")
            if cur is None or cur["status"] == "resolved":
                self.opened += 1
                cur = self.incidents[key or f"auto-{self.opened}"] = {
                    "number": self.opened, "status": "triggered", "alerts": 0,
                }  # fmt: skip
            cur["alerts"] += 1
            self.created()
        elif action in ("acknowledge", "resolve"):
            if not key:
                raise Refused(400, "dedup_key is required to acknowledge or resolve")
            cur = self.incidents.get(key)
            if cur is None or cur["status"] == "resolved":
                self.noops += 1  # PagerDuty accepts it and changes nothing
            else:
                cur["status"] = "acknowledged" if action == "acknowledge" else "resolved"
        else:
            raise Refused(400, "event_action must be trigger, acknowledge or resolve")
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}
