"""Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, qop=auth.

`DigestClient` answers 401/407 challenges and keeps the nonce for later requests,
counting `nc` up as RFC 7616 §3.4 requires when a nonce is reused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from agent.sip.message import SipParseError

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def parse_challenge(value: str) -> dict[str, str]:
    """`Digest realm="r", nonce="n", qop="auth"` -> lowercase-keyed parameters."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"auth scheme {scheme!r} is not Digest")
    params: dict[str, str] = {}
    for m in re.finditer(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?', rest):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"')
        params[m.group(1).lower()] = v
    for key in ("realm", "nonce"):
        if key not in params:
            raise SipParseError(f"Digest challenge has no {key}")
    return params


def _h(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    if base not in _ALGORITHMS:
        raise SipParseError(f"Digest algorithm {algorithm!r} is not supported (MD5, SHA-256)")
    return _ALGORITHMS[base](text.encode("utf-8")).hexdigest()


def digest_response(
    *,
    username: str,
    password: str,
    realm: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: int = 1,
    cnonce: str = "",
) -> str:
    """The `response` value of RFC 7616 §3.4.1 (qop=auth or none; -sess variants too)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


@dataclass
class DigestClient:
    """Credentials plus the last challenge, so later requests reuse the nonce with nc+1."""

    username: str
    password: str
    challenge: dict[str, str] = field(default_factory=dict)
    nc: int = 0
    header_name: str = "Authorization"

    def on_challenge(self, status: int, values: list[str]) -> None:
        """Take the best challenge of a 401 (WWW-) or 407 (Proxy-Authenticate) response.

        SHA-256 is preferred over MD5 when the server offers both (RFC 8760 §2.4).
        """
        if not values:
            raise SipParseError(f"{status} response carries no challenge")
        parsed = [parse_challenge(v) for v in values]
        usable = [
            p
            for p in parsed
            if p.get("algorithm", "MD5").upper().removesuffix("-SESS") in _ALGORITHMS
        ]
        if not usable:
            algs = ", ".join(p.get("algorithm", "MD5") for p in parsed)
            raise SipParseError(f"no supported Digest algorithm offered ({algs})")
        usable.sort(key=lambda p: 0 if "SHA-256" in p.get("algorithm", "").upper() else 1)
        new = usable[0]
        if new.get("nonce") != self.challenge.get("nonce"):
            self.nc = 0
        self.challenge = new
        self.header_name = "Proxy-Authorization" if status == 407 else "Authorization"

    def authorization(self, method: str, uri: str) -> str:
        """The header value for one request (call after `on_challenge`)."""
        ch = self.challenge
        if not ch:
            raise SipParseError("no challenge received yet")
        algorithm = ch.get("algorithm", "MD5")
        qops = [q.strip() for q in ch.get("qop", "").split(",") if q.strip()]
        qop = "auth" if "auth" in qops else None
        if qops and qop is None:
            raise SipParseError(f"qop {ch['qop']!r} offered, but only 'auth' is supported")
        self.nc += 1
        cnonce = secrets.token_hex(8)
        resp = digest_response(
            username=self.username,
            password=self.password,
            realm=ch["realm"],
            method=method,
            uri=uri,
            nonce=ch["nonce"],
            algorithm=algorithm,
            qop=qop,
            nc=self.nc,
            cnonce=cnonce,
        )
        parts = [
            f'username="{self.username}"',
            f'realm="{ch["realm"]}"',
            f'nonce="{ch["nonce"]}"',
            f'uri="{uri}"',
            f'response="{resp}"',
            f"algorithm={algorithm}",
        ]
        if qop:
            parts += [f"qop={qop}", f"nc={self.nc:08x}", f'cnonce="{cnonce}"']
        if "opaque" in ch:
            parts.append(f'opaque="{ch["opaque"]}"')
        return "Digest " + ", ".join(parts)
