"""Requests outside and inside a dialog (RFC 3261 §8.1, §12): headers, route sets, ACK, BYE."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from agent.sip.headers import NameAddr, SipUri, Via, new_tag
from agent.sip.message import SipMessage, SipParseError

USER_AGENT = "qos-scout"


@dataclass
class Leg:
    """The caller's side of a would-be dialog: identities, Call-ID, tag and CSeq counter."""

    local_uri: str
    remote_uri: str
    contact: str
    call_id: str = field(default_factory=lambda: secrets.token_hex(12))
    local_tag: str = field(default_factory=new_tag)
    cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)

    def request(
        self,
        method: str,
        via: Via,
        *,
        uri: str | None = None,
        remote_tag: str | None = None,
        routes: list[str] | None = None,
        next_cseq: bool = True,
    ) -> SipMessage:
        if next_cseq:
            self.cseq += 1
        msg = SipMessage.request(method, uri or self.remote_uri)
        msg.add("Via", str(via))
        msg.add("Max-Forwards", "70")
        for r in routes or []:
            msg.add("Route", r)
        msg.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        to = f"<{self.remote_uri}>" + (f";tag={remote_tag}" if remote_tag else "")
        msg.add("To", to)
        msg.add("Call-ID", self.call_id)
        msg.add("CSeq", f"{self.cseq} {method}")
        msg.add("Contact", f"<{self.contact}>")
        msg.add("User-Agent", USER_AGENT)
        return msg


@dataclass
class Dialog:
    """An early or confirmed dialog as the UAC sees it (RFC 3261 §12.1.2)."""

    leg: Leg
    remote_tag: str
    remote_target: str
    route_set: list[str]
    invite_cseq: int

    @classmethod
    def from_response(cls, leg: Leg, invite: SipMessage, response: SipMessage) -> Dialog:
        to = NameAddr.parse(response.get("To") or "")
        if not to.tag:
            raise SipParseError(f"{response.status} to INVITE has no To tag")
        contacts = response.get_all("Contact")
        target = NameAddr.parse(contacts[0]).uri if contacts else invite.uri or ""
        routes = list(reversed(response.get_all("Record-Route")))
        return cls(leg, to.tag, target, routes, invite.cseq[0])

    def _uri_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route headers, handling a strict-routing first hop (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in SipUri.parse(first.uri).params:
            return self.remote_target, list(self.route_set)
        return first.uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    def next_hop_uri(self) -> str:
        """The URI whose host/port the next in-dialog request is sent to."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return self.remote_target

    def ack(self, via: Via, invite: SipMessage) -> SipMessage:
        """The ACK for a 2xx: a new transaction, same CSeq number (§13.2.2.4)."""
        uri, routes = self._uri_and_routes()
        msg = self.leg.request(
            "ACK", via, uri=uri, remote_tag=self.remote_tag, routes=routes, next_cseq=False
        )
        msg.set("CSeq", f"{self.invite_cseq} ACK")
        for name in ("Authorization", "Proxy-Authorization"):
            for v in invite.get_all(name):
                msg.add(name, v)
        return msg

    def request(self, method: str, via: Via) -> SipMessage:
        uri, routes = self._uri_and_routes()
        return self.leg.request(method, via, uri=uri, remote_tag=self.remote_tag, routes=routes)


def cancel_for(invite: SipMessage) -> SipMessage:
    """CANCEL for a pending INVITE: same Via branch, Request-URI, Call-ID and CSeq number."""
    msg = SipMessage.request("CANCEL", invite.uri or "")
    msg.add("Via", invite.get_all("Via")[0])
    msg.add("Max-Forwards", "70")
    for r in invite.get_all("Route"):
        msg.add("Route", r)
    msg.add("From", invite.get("From") or "")
    msg.add("To", invite.get("To") or "")
    msg.add("Call-ID", invite.call_id)
    msg.add("CSeq", f"{invite.cseq[0]} CANCEL")
    return msg
