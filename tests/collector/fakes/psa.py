"""Contract fakes of the PSAs: ConnectWise PSA (Basic company+public:private and clientId;
service/tickets, notes, JSON-patch), Autotask (zone discovery; ApiIntegrationCode,
UserName, Secret; Tickets with PATCH partial and PUT full updates; TicketNotes under their
ticket; query by filter) and HaloPSA (client-credentials tokens that expire; arrays of
Tickets and Actions, POST with `id` updates)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from typing import Any, ClassVar

from tests.collector.fakes.base import Call, Fake, Refused, json_body, need


class ConnectWiseFake(Fake):
    """Checked against ConnectWise PSA's developer guide (REST API 3.0): Basic
    company+publicKey:privateKey and the `clientId` header on every call; GET
    service/tickets takes `conditions` in its `field="value"` syntax (here only
    externalXRef, what the client searches by); notes under service/tickets/{id}/notes;
    PATCH takes JSON-patch operations."""

    PREFIX = "/v4_6_release/apis/3.0"

    def __init__(self, company: str, public: str, private: str, client_id: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{company}+{public}:{private}".encode()).decode()
        self.client_id = client_id
        self.boards = {"Voice": ["New", "In Progress", "Closed"]}
        self.companies = {"ACME-CORP"}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[str]] = {}
        super().__init__()

    @property
    def api(self) -> str:
        return self.url + self.PREFIX

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.headers.get("authorization") != self.auth:
            raise Refused(401, "Basic authentication (company+publicKey:privateKey) refused")
        if call.headers.get("clientid") != self.client_id:
            raise Refused(401, "clientId header missing or unknown")
        path = call.path.removeprefix(self.PREFIX)
        if call.method == "GET" and path == "/service/tickets":
            m = re.fullmatch(r'externalXRef="([^"]*)"', call.query.get("conditions", ""))
            if m is None:
                raise Refused(400, 'conditions: only externalXRef="..." is understood here')
            return 200, [{"id": i} for i, t in self.tickets.items()
                         if t.get("externalXRef") == m.group(1)]  # fmt: skip
        if call.method == "POST" and path == "/service/tickets":
            t = json_body(call)
            need(t, "summary", "board", "company")
            if len(t["summary"]) > 100:
                raise Refused(400, "summary is longer than 100 characters")
            if t["board"].get("name") not in self.boards:
                raise Refused(400, f"board {t['board']!r} not found")
            if t["company"].get("identifier") not in self.companies:
                raise Refused(400, f"company {t['company']!r} not found")
            status = (t.get("status") or {}).get("name", "New")
            if status not in self.boards[t["board"]["name"]]:
                raise Refused(400, f"status {status!r} is not a status of the board")
            tid = len(self.tickets) + 1001
            self.tickets[tid] = {**t, "id": tid, "status": {"name": status}}
            self.notes[tid] = []
            self.created()
            return 201, self.tickets[tid]
        m = re.fullmatch(r"/service/tickets/(\d+)(/notes)?", path)
        if m is None or int(m.group(1)) not in self.tickets:
            raise Refused(404, f"no such resource {call.method} {path}")
        tid = int(m.group(1))
        if call.method == "POST" and m.group(2):
            n = json_body(call)
            need(n, "text")
            flags = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
            if not any(n.get(f) is True for f in flags):
                raise Refused(400, "a note needs one of " + ", ".join(flags))
            self.notes[tid].append(n["text"])
            return 201, {"id": len(self.notes[tid]), "ticketId": tid, **n}
        if call.method == "PATCH" and not m.group(2):
            ops = json_body(call)
            if not isinstance(ops, list) or not ops:
                raise Refused(400, "PATCH takes a JSON-patch array of operations")
            for op in ops:
                if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
                    raise Refused(400, f"not a JSON-patch operation: {op!r}")
                if op.get("path") == "status":
                    name = (op.get("value") or {}).get("name")
                    if name not in self.boards[self.tickets[tid]["board"]["name"]]:
                        raise Refused(400, f"status {name!r} is not a status of the board")
                    self.tickets[tid]["status"] = {"name": name}
                else:
                    raise Refused(400, f"path {op.get('path')!r} is not patched by this fake")
            return 200, self.tickets[tid]
        raise Refused(405, f"{call.method} not allowed on {path}")


class AutotaskFake(Fake):
    """Checked against Autotask's REST API help (developer help, APIs > REST > Entities):
    "Tickets" (TicketsEntity.htm: Tickets/query GET and POST, Tickets POST, PUT and PATCH;
    TicketNotes among its children, so a note is created under its ticket) and
    "TicketNotes" (TicketNotesEntity.htm: a title only where the ticket category's "Require
    titles on ticket notes" is on, which this fake models as on); zone discovery from
    "Autotask REST API zone information" (zoneInformation?user=, answering the zone's url).

    What a create needs is Autotask's field metadata (Tickets/entityInformation/fields, the
    SOAP getFieldInfo before it): a ticket companyID, title, status and priority, a note
    description, noteType, publish and title (its ticketID is the one in the URL); string
    lengths as below. Beyond those, the ticket category a tenant applies decides which more
    fields are required ("API-only Categories" in the Autotask help: a category sets the
    default value and the Required setting of fields): `category_requires` models such a
    tenant. Autotask refuses an invalid entity with HTTP 500 and its reason, "<field> is
    required.; on record number [0]." for a missing one, as integrators report it (the help
    pages read do not show the answer; its `errors` list here is an assumption)."""

    FIELDS = ("companyID", "title", "description", "status", "priority", "queueID", "externalID")
    TICKET_REQUIRED = ("companyID", "title", "status", "priority")
    TICKET_LENGTHS: ClassVar[dict[str, int]] = {"title": 255, "description": 8000, "externalID": 50}
    NOTE_REQUIRED = ("description", "noteType", "publish", "title")
    NOTE_LENGTHS: ClassVar[dict[str, int]] = {"title": 250, "description": 32000}

    def __init__(self, username: str, code: str, secret: str) -> None:
        self.username, self.code, self.secret = username, code, secret
        self.companies = {174}
        self.category_requires: set[str] = set()  # e.g. {"queueID"}: the tenant's category
        self.tickets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        super().__init__()

    @property
    def zone_url(self) -> str:
        return f"{self.url}/atservicesrest/v1.0/zoneInformation"

    @staticmethod
    def invalid(message: str) -> Refused:
        return Refused(500, message, {"errors": [f"{message}; on record number [0]."]})

    def check(
        self, body: Any, required: tuple[str, ...], lengths: dict[str, int]
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        for f in required:
            if body.get(f) in (None, ""):
                raise self.invalid(f"{f} is required.")
        for f, most in lengths.items():
            value = body.get(f)
            if isinstance(value, str) and len(value) > most:
                raise self.invalid(f"{f} is longer than {most} characters.")
        return body

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.path == "/atservicesrest/v1.0/zoneInformation" and call.method == "GET":
            if call.query.get("user") != self.username:
                raise Refused(404, "no zone for this user")
            return 200, {"zoneName": "Fake Zone", "url": f"{self.url}/atservicesrest/",
                         "webUrl": f"{self.url}/", "ci": 0}  # fmt: skip
        if not call.path.startswith("/atservicesrest/V1.0/"):
            raise Refused(404, f"no such resource {call.path}")
        got = (call.headers.get("apiintegrationcode"), call.headers.get("username"),
               call.headers.get("secret"))  # fmt: skip
        if got != (self.code, self.username, self.secret):
            raise Refused(401, "ApiIntegrationCode, UserName and Secret headers refused")
        path = call.path.removeprefix("/atservicesrest/V1.0")
        if path == "/Tickets/query" and call.method == "GET":
            search = json.loads(call.query.get("search", "{}"))
            items = list(self.tickets.values())
            for f in search.get("filter", []):
                if f.get("op") != "eq" or f.get("field") not in self.FIELDS:
                    raise Refused(400, f"filter not understood: {f!r}")
                items = [t for t in items if t.get(f["field"]) == f.get("value")]
            return 200, {"items": items, "pageDetails": {"count": len(items)}}
        if path == "/Tickets" and call.method == "POST":
            required = self.TICKET_REQUIRED + tuple(sorted(self.category_requires))
            t = self.check(json_body(call), required, self.TICKET_LENGTHS)
            if "id" in t:
                raise Refused(400, "POST creates: no id")
            if t["companyID"] not in self.companies:
                raise self.invalid(f"companyID {t['companyID']} not found.")
            tid = len(self.tickets) + 7001
            self.tickets[tid] = {k: t.get(k) for k in self.FIELDS} | {"id": tid}
            self.notes[tid] = []
            self.created()
            return 200, {"itemId": tid}
        if path == "/Tickets" and call.method in ("PATCH", "PUT"):
            t = self.check(json_body(call), ("id",), self.TICKET_LENGTHS)
            cur = self.tickets.get(t["id"])
            if cur is None:
                raise Refused(404, f"ticket {t['id']} not found")
            if call.method == "PUT":  # a full update: what is not sent is blanked
                cur.update({k: t.get(k) for k in self.FIELDS})
            else:
                unknown = set(t) - {*self.FIELDS, "id"}
                if unknown:
                    raise Refused(400, f"unknown fields {sorted(unknown)}")
                cur.update(t)
            return 200, {"itemId": t["id"]}
        m = re.fullmatch(r"/Tickets/(\d+)/Notes", path)
        if m and call.method == "POST":
            tid = int(m.group(1))
            if tid not in self.tickets:
                raise Refused(404, f"ticket {tid} not found")
            n = self.check(json_body(call), self.NOTE_REQUIRED, self.NOTE_LENGTHS)
            if n.get("ticketID", tid) != tid:
                raise self.invalid(f"ticketID {n['ticketID']} is not the ticket {tid} of the URL.")
            self.notes[tid].append(n | {"ticketID": tid})
            return 200, {"itemId": len(self.notes[tid])}
        raise Refused(404, f"no such resource {call.method} {path}")


class HaloFake(Fake):
    """Checked against HaloPSA's API documentation: a token from the authorisation server
    (POST {auth}/token, a form with grant_type=client_credentials, client_id,
    client_secret and scope; ?tenant= for hosted instances), then the resource server's
    /api/Tickets and /api/Actions taking arrays of objects (POST with `id` updates);
    GET /api/Tickets?search= searches the summary."""

    def __init__(self, client_id: str, client_secret: str, ttl_s: float = 3600) -> None:
        self.client_id, self.client_secret, self.ttl_s = client_id, client_secret, ttl_s
        self.tokens: dict[str, float] = {}
        self.clients, self.sites = {12}, {34}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.actions: dict[int, list[str]] = {}
        super().__init__()

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)

    def handle(self, call: Call) -> tuple[int, Any]:
        if call.path == "/auth/token":
            return self._token(call)
        if not call.path.startswith("/api/"):
            raise Refused(404, f"no such resource {call.path}")
        scheme, _, tok = call.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or self.tokens.get(tok, 0.0) < time.monotonic():
            raise Refused(401, "bearer token missing, unknown or expired")
        if call.path == "/api/Tickets" and call.method == "GET":
            q = call.query.get("search", "")
            found = [t for t in self.tickets.values() if q and q in t["summary"]]
            return 200, {"record_count": len(found), "tickets": found}
        if call.path in ("/api/Tickets", "/api/Actions") and call.method == "POST":
            items = json_body(call)
            if not isinstance(items, list) or len(items) != 1:
                raise Refused(400, "the body must be an array of one object here")
            return (self._ticket(items[0]) if call.path == "/api/Tickets"
                    else self._action(items[0]))  # fmt: skip
        raise Refused(404, f"no such resource {call.method} {call.path}")

    def _token(self, call: Call) -> tuple[int, Any]:
        if call.method != "POST" or not call.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise Refused(400, "POST a form (application/x-www-form-urlencoded)")
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "all":
            raise Refused(400, "grant_type=client_credentials and scope=all expected")
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id, self.client_secret
        ):  # fmt: skip
            raise Refused(401, "invalid_client")
        tok = secrets.token_hex(16)
        self.tokens[tok] = time.monotonic() + self.ttl_s
        return 200, {"access_token": tok, "token_type": "Bearer", "expires_in": self.ttl_s}

    def _ticket(self, t: Any) -> tuple[int, Any]:
        if isinstance(t, dict) and "id" in t:
            cur = self.tickets.get(t["id"])
            if cur is None:
                raise Refused(404, f"ticket {t['id']} not found")
            cur.update(t)
            return 201, cur
        need(t, "summary", "details", "client_id", "site_id", "tickettype_id")
        if t["client_id"] not in self.clients or t["site_id"] not in self.sites:
            raise Refused(400, "client_id or site_id not found")
        tid = len(self.tickets) + 501
        self.tickets[tid] = {**t, "id": tid, "status_id": 1}
        self.actions[tid] = []
        self.created()
        return 201, self.tickets[tid]

    def _action(self, a: Any) -> tuple[int, Any]:
        need(a, "ticket_id", "note")
        if a["ticket_id"] not in self.tickets:
            raise Refused(404, f"ticket {a['ticket_id']} not found")
        self.actions[a["ticket_id"]].append(a["note"])
        return 201, {**a, "id": len(self.actions[a["ticket_id"]])}
