"""PSA ticketing for partner channels: ConnectWise PSA, Autotask and HaloPSA, each through
its documented REST API, and the one flow they share (`deliver_psa`): a ticket of ours is
one PSA ticket, created once (the link is written before the request, and a retry after a
lost answer searches the PSA for the ticket's reference before creating), its events are
notes, resolve closes it and a flap reopens the same one."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.egress import Egress, json_of
from collector.messages import Message
from collector.notifiers import DeliveryError


def reference(ticket_id: str) -> str:
    """The unique reference put in the PSA ticket (searched for on a retry)."""
    return f"qs-{ticket_id}"


class Psa(Protocol):
    def find(self, ref: str) -> str | None: ...
    def create_body(self, m: Message, mapping: dict[str, Any], ref: str) -> Any: ...
    def create(self, body: Any) -> str: ...
    def note(self, ext_id: str, m: Message) -> None: ...
    def set_status(self, ext_id: str, which: str) -> None: ...


def _need(mapping: dict[str, Any], key: str, what: str) -> Any:
    if mapping.get(key) is None:
        raise DeliveryError(
            f"{what}: no `{key}` mapped for this ticket's customer or site "
            "(PUT /api/v1/channels/{id}/mappings/{customer or site id})"
        )
    return mapping[key]


def _id_of(value: Any, what: str) -> str:
    """The ticket id of a PSA's answer. All three number their tickets; anything else (a
    broken or hostile answer) would go into later URLs and `int()` calls, so it is refused
    here, where a retry can still set it right."""
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) == "":
        raise DeliveryError(f"{what}: the answer carries no ticket id")
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise DeliveryError(f"{what}: the answer's ticket id {text[:40]!r} is not a number")
    return text


class ConnectWise:
    """ConnectWise PSA (Manage) REST API 3.0."""

    ACCEPT = "application/vnd.connectwise.com+json; version=2022.1"

    def __init__(self, eg: Egress, cfg: dict[str, Any]) -> None:
        self.eg, self.cfg = eg, cfg
        self.base = str(cfg["url"]).rstrip("/")
        basic = f"{cfg['company']}+{cfg['public_key']}:{cfg['private_key']}"
        self.headers = {
            "Authorization": "Basic " + base64.b64encode(basic.encode()).decode(),
            "clientId": str(cfg["client_id"]),
            "Accept": self.ACCEPT,
        }

    def find(self, ref: str) -> str | None:
        resp = self.eg.request(
            "GET", f"{self.base}/service/tickets", "connectwise search", headers=self.headers,
            params={"conditions": f'externalXRef="{ref}"', "fields": "id"},
        )  # fmt: skip
        found = json_of(resp, "connectwise search")
        if isinstance(found, list) and found and isinstance(found[0], dict):
            return _id_of(found[0].get("id"), "connectwise search")
        return None

    def create_body(self, m: Message, mapping: dict[str, Any], ref: str) -> Any:
        return {
            "summary": m.title[:100],
            "board": {"name": mapping.get("board") or self.cfg["board"]},
            "company": {"identifier": _need(mapping, "company", "connectwise")},
            "status": {"name": self.cfg["status_new"]},
            "initialDescription": m.text,
            "externalXRef": ref,
        }

    def create(self, body: Any) -> str:
        resp = self.eg.request("POST", f"{self.base}/service/tickets", "connectwise create",
                               headers=self.headers, json=body)  # fmt: skip
        doc = json_of(resp, "connectwise create")
        return _id_of(doc.get("id") if isinstance(doc, dict) else None, "connectwise create")

    def note(self, ext_id: str, m: Message) -> None:
        body = {"text": f"{m.title}\n\n{m.text}", "detailDescriptionFlag": True}
        self.eg.request("POST", f"{self.base}/service/tickets/{ext_id}/notes",
                        "connectwise note", headers=self.headers, json=body)  # fmt: skip

    def set_status(self, ext_id: str, which: str) -> None:
        name = self.cfg["status_closed" if which == "closed" else "status_reopened"]
        patch = [{"op": "replace", "path": "status", "value": {"name": name}}]
        self.eg.request("PATCH", f"{self.base}/service/tickets/{ext_id}", "connectwise status",
                        headers=self.headers, json=patch)  # fmt: skip


ZONE_TTL_S = 3600.0
# Autotask's string lengths (its field metadata, Tickets and TicketNotes entityInformation):
# longer text is cut to fit, since Autotask refuses the whole entity otherwise.
AT_TITLE, AT_DESCRIPTION, AT_EXTERNAL_ID = 255, 8000, 50
AT_NOTE_TITLE, AT_NOTE_DESCRIPTION = 250, 32000
_zones: dict[tuple[str, str], tuple[str, float]] = {}
_zone_lock = threading.Lock()


class Autotask:
    """Autotask REST API v1.0: the zone is discovered for the API user first."""

    def __init__(self, eg: Egress, cfg: dict[str, Any]) -> None:
        self.eg, self.cfg = eg, cfg
        self.headers = {
            "ApiIntegrationCode": str(cfg["integration_code"]),
            "UserName": str(cfg["username"]),
            "Secret": str(cfg["secret"]),
        }
        self._base: str | None = None

    @property
    def base(self) -> str:
        """The zone's API base, asked once an hour per user (a user stays in its zone)."""
        if self._base is None:
            key = (str(self.cfg["zone_url"]), str(self.cfg["username"]))
            with _zone_lock:
                known = _zones.get(key)
            if known is not None and known[1] > time.monotonic():
                self._base = known[0]
                return self._base
            resp = self.eg.request("GET", self.cfg["zone_url"], "autotask zone",
                                   params={"user": self.cfg["username"]})  # fmt: skip
            doc = json_of(resp, "autotask zone")
            url = doc.get("url") if isinstance(doc, dict) else None
            if not isinstance(url, str) or not url:
                raise DeliveryError("autotask zone: the answer names no zone url")
            self._base = url.rstrip("/") + "/V1.0"
            with _zone_lock:
                _zones[key] = (self._base, time.monotonic() + ZONE_TTL_S)
        return self._base

    def find(self, ref: str) -> str | None:
        search = {"filter": [{"op": "eq", "field": "externalID", "value": ref}]}
        params = {"search": json.dumps(search)}
        resp = self.eg.request("GET", f"{self.base}/Tickets/query", "autotask search",
                               headers=self.headers, params=params)  # fmt: skip
        doc = json_of(resp, "autotask search")
        items = doc.get("items") if isinstance(doc, dict) else None
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return _id_of(items[0].get("id"), "autotask search")
        return None

    def create_body(self, m: Message, mapping: dict[str, Any], ref: str) -> Any:
        if len(ref) > AT_EXTERNAL_ID:  # never cut: a retry searches for the whole reference
            raise DeliveryError(f"autotask: the reference {ref!r} is longer than "
                                f"externalID's {AT_EXTERNAL_ID} characters")  # fmt: skip
        body: dict[str, Any] = {
            "companyID": _need(mapping, "company_id", "autotask"),
            "title": m.title[:AT_TITLE],
            "description": m.text[:AT_DESCRIPTION],
            "status": self.cfg["status_new"],
            "priority": self.cfg["priority"],
            "externalID": ref,
        }
        queue = mapping.get("queue_id") or self.cfg.get("queue_id")
        if queue:
            body["queueID"] = queue
        return body

    def create(self, body: Any) -> str:
        resp = self.eg.request("POST", f"{self.base}/Tickets", "autotask create",
                               headers=self.headers, json=body)  # fmt: skip
        doc = json_of(resp, "autotask create")
        return _id_of(doc.get("itemId") if isinstance(doc, dict) else None, "autotask create")

    def note(self, ext_id: str, m: Message) -> None:
        # TicketNotes is a child entity of Tickets: created under its parent, the parent's
        # id also in the body (a required field of the entity, as Autotask's own examples
        # send it).
        body = {"ticketID": int(ext_id), "title": m.title[:AT_NOTE_TITLE],
                "description": m.text[:AT_NOTE_DESCRIPTION], "noteType": 1,
                "publish": 1}  # fmt: skip
        self.eg.request("POST", f"{self.base}/Tickets/{ext_id}/Notes", "autotask note",
                        headers=self.headers, json=body)  # fmt: skip

    def set_status(self, ext_id: str, which: str) -> None:
        # PATCH changes only the fields sent (PUT would replace the whole ticket).
        status = self.cfg["status_closed" if which == "closed" else "status_reopened"]
        body = {"id": int(ext_id), "status": status}
        self.eg.request("PATCH", f"{self.base}/Tickets", "autotask status",
                        headers=self.headers, json=body)  # fmt: skip


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


_halo_tokens: dict[str, _Token] = {}
_halo_lock = threading.Lock()


def forget_token(channel_id: str) -> None:
    """Drop a channel's cached Halo token (its credentials changed or it was deleted)."""
    with _halo_lock:
        _halo_tokens.pop(channel_id, None)


class Halo:
    """HaloPSA: a bearer token from the authorisation server (client credentials), then
    the resource API (arrays of objects: POST creates, or updates the object with `id`)."""

    def __init__(self, eg: Egress, cfg: dict[str, Any], cache_key: str) -> None:
        self.eg, self.cfg, self.key = eg, cfg, cache_key
        self.api = str(cfg["api_url"]).rstrip("/") + "/api"

    def _token(self, fresh: bool = False) -> str:
        with _halo_lock:
            tok = _halo_tokens.get(self.key)
        if tok is not None and not fresh and tok.expires > time.monotonic() + 30:
            return tok.value
        form = {
            "grant_type": "client_credentials", "client_id": self.cfg["client_id"],
            "client_secret": self.cfg["client_secret"], "scope": "all",
        }  # fmt: skip
        params = {"tenant": self.cfg["tenant"]} if self.cfg.get("tenant") else None
        url = str(self.cfg["auth_url"]).rstrip("/") + "/token"
        resp = self.eg.request("POST", url, "halo token", data=form, params=params)
        doc = json_of(resp, "halo token")
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
            raise DeliveryError("halo token: the answer carries no access_token")
        ttl = doc.get("expires_in")
        ttl_s = float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else 300.0
        tok = _Token(doc["access_token"], time.monotonic() + ttl_s)
        with _halo_lock:
            _halo_tokens[self.key] = tok
        return tok.value

    def _call(self, method: str, path: str, what: str, **kw: Any) -> Any:
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self._token(fresh)}"}
            try:
                return json_of(self.eg.request(method, f"{self.api}/{path}", what,
                                               headers=headers, **kw), what)  # fmt: skip
            except DeliveryError as exc:
                if fresh or "HTTP 401" not in str(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def find(self, ref: str) -> str | None:
        doc = self._call("GET", "Tickets", "halo search", params={"search": ref})
        found = doc.get("tickets") if isinstance(doc, dict) else None
        for t in found if isinstance(found, list) else []:
            if isinstance(t, dict) and f"[{ref}]" in str(t.get("summary", "")):
                return _id_of(t.get("id"), "halo search")
        return None

    def create_body(self, m: Message, mapping: dict[str, Any], ref: str) -> Any:
        return [{
            "summary": f"{m.title[:200]} [{ref}]",
            "details": m.text,
            "client_id": _need(mapping, "client_id", "halo"),
            "site_id": _need(mapping, "site_id", "halo"),
            "tickettype_id": self.cfg["tickettype_id"],
        }]  # fmt: skip

    def create(self, body: Any) -> str:
        doc = self._call("POST", "Tickets", "halo create", json=body)
        if isinstance(doc, list):
            doc = doc[0] if doc else None
        return _id_of(doc.get("id") if isinstance(doc, dict) else None, "halo create")

    def note(self, ext_id: str, m: Message) -> None:
        body = [{"ticket_id": int(ext_id), "note": f"{m.title}\n\n{m.text}", "outcome": "Note",
                 "hiddenfromuser": False}]  # fmt: skip
        self._call("POST", "Actions", "halo note", json=body)

    def set_status(self, ext_id: str, which: str) -> None:
        status = self.cfg["status_closed" if which == "closed" else "status_reopened"]
        self._call(
            "POST", "Tickets", "halo status", json=[{"id": int(ext_id), "status_id": status}]
        )


def client_for(kind: str, eg: Egress, cfg: dict[str, Any], channel_id: str) -> Psa:
    if kind == "connectwise":
        return ConnectWise(eg, cfg)
    if kind == "autotask":
        return Autotask(eg, cfg)
    return Halo(eg, cfg, channel_id)


@dataclass
class Links:
    """The ticket's link to its PSA ticket, read and written in transactions of their own
    (each write is committed before the next request to the PSA)."""

    get: Callable[[], Any]
    begin: Callable[[str], None]
    set: Callable[..., None]


def deliver_psa(psa: Psa, links: Links, m: Message, mapping: dict[str, Any]) -> None:
    """One ticket event to the PSA. A ticket without a PSA ticket gets one (unless the
    event is its resolution); then the event is a note, resolve closes, reopen reopens."""
    link = links.get()
    ext = link.external_id if link is not None else ""
    if not ext:
        if m.event == "resolved":
            return  # nothing to close
        ref = reference(m.ticket_id)
        body = psa.create_body(m, mapping, ref)  # a missing mapping stops here, unrecorded
        if link is None:
            links.begin(ref)  # committed before the PSA hears of it
        else:
            ext = psa.find(link.reference) or ""  # an earlier attempt may have made it
        if not ext:
            ext = psa.create(body)
        links.set(external_id=ext, state="open")
        if m.event in ("opened", "reopened"):
            return  # the new PSA ticket says it all
    if m.event == "opened":
        return  # a retry of the create: done
    if m.event == "reopened":
        psa.set_status(ext, "reopened")
        links.set(state="open")
        psa.note(ext, m)
    elif m.event == "resolved":
        psa.note(ext, m)
        psa.set_status(ext, "closed")
        links.set(state="closed")
    else:
        psa.note(ext, m)
