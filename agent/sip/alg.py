"""SIP ALG detection: compare what we sent with what came back, or with what the far end saw.

Any SIP server echoes our top Via, From, Call-ID and CSeq in its responses; a middlebox that
rewrites them shows up there. Our responder goes further: it returns, in a base64 header an
ALG will not recognise, the Via, Contact, Content-Length and SDP addresses it received
(`X-Scout-Seen`), so rewritten Contact and SDP addresses, ports and lengths are named too.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from agent.sip.headers import NameAddr, SipUri, Via
from agent.sip.message import SipMessage, SipParseError
from agent.sip.sdp import parse_sdp

SEEN_HEADER = "X-Scout-Seen"


def describe_request(req: SipMessage, source: tuple[str, int]) -> dict[str, Any]:
    """What the responder saw of a request (sent back in `X-Scout-Seen`)."""
    seen: dict[str, Any] = {"source": f"{source[0]}:{source[1]}"}
    vias = req.get_all("Via")
    seen["via"] = vias[-1] if vias else None  # the originator's Via: proxies add theirs on top
    seen["proxies"] = max(0, len(vias) - 1)
    contacts = req.get_all("Contact")
    seen["contact"] = contacts[0] if contacts else None
    seen["content_length"] = req.get("Content-Length")
    seen["body_length"] = req.wire_body_length
    if req.body:
        try:
            m = parse_sdp(req.body)
            seen["sdp_c"], seen["sdp_port"] = m.address, m.port
        except SipParseError:
            seen["sdp_error"] = True
    return seen


def encode_seen(seen: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(seen, separators=(",", ":")).encode()).decode()


def responder_report(msg: SipMessage) -> dict[str, Any] | None:
    """The responder's `X-Scout-Seen` data in a response, None if absent or unreadable."""
    value = msg.get(SEEN_HEADER)
    if not value:
        return None
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _via_key(v: str) -> tuple[str, str, int | None, str | None]:
    via = Via.parse(v)
    return via.transport, via.host, via.port, via.branch


def _contact_hostport(v: str) -> tuple[str, int | None]:
    u = SipUri.parse(NameAddr.parse(v).uri)
    return u.host, u.port


def detect(sent: SipMessage, resp: SipMessage) -> tuple[bool, list[str]]:
    """(ALG detected?, evidence lines naming each rewritten field)."""
    evidence: list[str] = []
    try:
        ours = sent.get_all("Via")[0]
        theirs = resp.get_all("Via")[0]
        if _via_key(ours) != _via_key(theirs):
            evidence.append(f"Via rewritten in the response: sent {ours!r}, got {theirs!r}")
    except (SipParseError, IndexError) as exc:
        evidence.append(f"Via in the response is unreadable: {exc}")
    for name in ("Call-ID", "From"):
        if sent.get(name) != resp.get(name):
            evidence.append(f"{name} rewritten: sent {sent.get(name)!r}, got {resp.get(name)!r}")
    seen = responder_report(resp)
    if seen is not None:
        evidence += _compare_seen(sent, seen)
    return bool(evidence), evidence


def _compare_seen(sent: SipMessage, seen: dict[str, Any]) -> list[str]:
    ev: list[str] = []
    via = sent.get_all("Via")[0]
    if seen.get("via") and _via_key(seen["via"])[:3] != _via_key(via)[:3]:
        ev.append(f"Via rewritten on the way: sent {via!r}, far end saw {seen['via']!r}")
    contacts = sent.get_all("Contact")
    if contacts and seen.get("contact"):
        try:
            if _contact_hostport(contacts[0]) != _contact_hostport(seen["contact"]):
                ev.append(
                    f"Contact rewritten: sent {contacts[0]!r}, far end saw {seen['contact']!r}"
                )
        except SipParseError as exc:
            ev.append(f"Contact mangled: far end saw {seen['contact']!r} ({exc})")
    if sent.body:
        if seen.get("sdp_error"):
            ev.append("SDP mangled: the far end could not parse it")
        else:
            m = parse_sdp(sent.body)
            if seen.get("sdp_c") not in (None, m.address):
                ev.append(
                    f"SDP c= address rewritten: sent {m.address}, far end saw {seen['sdp_c']}"
                )
            if seen.get("sdp_port") not in (None, m.port):
                ev.append(f"SDP m= port rewritten: sent {m.port}, far end saw {seen['sdp_port']}")
    cl, bl = seen.get("content_length"), seen.get("body_length")
    if cl is not None and bl is not None and str(cl).strip() != str(bl):
        ev.append(
            f"Content-Length broken: header says {cl}, far end received {bl} body bytes "
            f"(we sent {len(sent.body)})"
        )
    return ev
