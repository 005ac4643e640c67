"""Structured SIP header values: URIs, name-addr (From/To/Contact/Route) and Via (RFC 3261)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from agent.sip.message import SipParseError, is_number

BRANCH_MAGIC = "z9hG4bK"


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def _params(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        out[k.strip().lower()] = v.strip().strip('"') if eq else None
    return out


def _fmt_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def format_hostport(host: str, port: int | None) -> str:
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return h if port is None else f"{h}:{port}"


def split_hostport(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` -> (host, port); raises SipParseError."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"host {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
    else:
        host, _, p = text.partition(":")
        rest = ":" + p if p else ""
    if not host:
        raise SipParseError(f"host in {text!r} is empty")
    if not rest:
        return host, None
    port = rest[1:]
    if not rest.startswith(":") or not is_number(port) or not 0 < int(port) < 65536:
        raise SipParseError(f"port in {text!r} is not 1..65535")
    return host, int(port)


@dataclass
class SipUri:
    """`sip:user@host:port;params?headers` (headers kept verbatim)."""

    scheme: str
    host: str
    user: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = re.match(r"^(sips?):(?:([^@]*)@)?([^;?]+)(;[^?]*)?(\?.*)?$", text.strip(), re.I)
        if not m:
            raise SipParseError(f"URI {text[:80]!r} is not a sip: or sips: URI")
        user = m.group(2)
        if user is not None:
            user = user.split(":", 1)[0]  # drop a password
        host, port = split_hostport(m.group(3))
        return cls(
            m.group(1).lower(), host, user, port, _params(m.group(4) or ""), m.group(5) or ""
        )

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        hostport = format_hostport(self.host, self.port)
        return f"{self.scheme}:{user}{hostport}{_fmt_params(self.params)}{self.headers}"


@dataclass
class NameAddr:
    """`"Display" <uri>;params` as in From, To, Contact, Route and Record-Route."""

    uri: str
    display: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"name-addr {text[:80]!r}: missing '>'")
            return cls(text[lt + 1 : gt], text[:lt].strip().strip('"'), _params(text[gt + 1 :]))
        uri, _, params = text.partition(";")
        if not uri or ":" not in uri:
            raise SipParseError(f"address {text[:80]!r} has no URI")
        return cls(uri.strip(), "", _params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_fmt_params(self.params)}"


@dataclass
class Via:
    """`SIP/2.0/UDP host:port;branch=...;rport;received=...`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = re.match(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", text.strip(), re.I)
        if not m:
            raise SipParseError(f"Via {text[:80]!r} is not 'SIP/2.0/TRANSPORT host'")
        host, port = split_hostport(m.group(2))
        return cls(m.group(1).upper(), host, port, _params(m.group(3) or ""))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hostport = format_hostport(self.host, self.port)
        return f"SIP/2.0/{self.transport} {hostport}{_fmt_params(self.params)}"
