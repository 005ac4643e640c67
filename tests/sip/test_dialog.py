"""Dialogs as the UAC sees them (RFC 3261 §12): route sets, ACK for 2xx, BYE, CANCEL."""

from __future__ import annotations

import pytest

from agent.sip.dialog import Dialog, Leg, cancel_for
from agent.sip.headers import Via
from agent.sip.message import SipMessage, SipParseError


def _via() -> Via:
    return Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKnew", "rport": None})


def _answer(invite: SipMessage, record_routes: list[str], to_tag: str | None = "t1") -> SipMessage:
    r = SipMessage.response(200, "OK")
    for h in ("Via", "From", "Call-ID", "CSeq"):
        r.add(h, invite.get(h) or "")
    r.add("To", (invite.get("To") or "") + (f";tag={to_tag}" if to_tag else ""))
    for rr in record_routes:
        r.add("Record-Route", rr)
    r.add("Contact", "<sip:bob@192.0.2.9:5070>")
    return r


def test_loose_route_set_is_reversed_and_used_for_ack_and_bye() -> None:
    leg = Leg("sip:alice@a.example", "sip:bob@b.example", "sip:alice@10.0.0.1")
    invite = leg.request("INVITE", _via())
    invite.add("Proxy-Authorization", 'Digest username="alice"')
    d = Dialog.from_response(
        leg, invite, _answer(invite, ["<sip:p2.example;lr>", "<sip:p1.example;lr>"])
    )
    ack = d.ack(_via(), invite)
    assert ack.uri == "sip:bob@192.0.2.9:5070"
    assert ack.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert ack.cseq == (invite.cseq[0], "ACK")
    assert ack.get("Proxy-Authorization") == 'Digest username="alice"'
    bye = d.request("BYE", _via())
    assert bye.cseq == (invite.cseq[0] + 1, "BYE") and "tag=t1" in (bye.get("To") or "")
    assert d.next_hop_uri() == "sip:p1.example;lr"


def test_strict_router_goes_in_the_request_uri() -> None:
    leg = Leg("sip:alice@a.example", "sip:bob@b.example", "sip:alice@10.0.0.1")
    invite = leg.request("INVITE", _via())
    d = Dialog.from_response(leg, invite, _answer(invite, ["<sip:strict.example>"]))
    bye = d.request("BYE", _via())
    assert bye.uri == "sip:strict.example"
    assert bye.get_all("Route") == ["<sip:bob@192.0.2.9:5070>"]


def test_2xx_without_to_tag_is_refused() -> None:
    leg = Leg("sip:alice@a.example", "sip:bob@b.example", "sip:alice@10.0.0.1")
    invite = leg.request("INVITE", _via())
    with pytest.raises(SipParseError, match="no To tag"):
        Dialog.from_response(leg, invite, _answer(invite, [], to_tag=None))


def test_cancel_matches_the_invite_transaction() -> None:
    leg = Leg("sip:alice@a.example", "sip:bob@b.example", "sip:alice@10.0.0.1")
    invite = leg.request("INVITE", _via())
    c = cancel_for(invite)
    assert c.method == "CANCEL" and c.uri == invite.uri
    assert c.get_all("Via") == invite.get_all("Via")[:1]
    assert c.cseq == (invite.cseq[0], "CANCEL") and c.call_id == invite.call_id
