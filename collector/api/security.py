"""HTTP hardening of every request and response: security headers (a Content-Security-Policy
without inline script, no framing, nosniff, a referrer policy, no-store on authenticated
answers) and throttles (failed authentications per client address, a request rate per
partner key), with the client address read through the configured trusted proxies only.

The throttles are in memory and per process (no database query): token buckets keyed by
address or by the SHA-256 of a credential, the least recently seen forgotten beyond
`web.max_tracked`. A failed authentication is any 401 answer; a credential is "seen
working" once a route that checks it answered 2xx. While an address is over its failure
budget it gets 429 with Retry-After, except for requests carrying a credential seen working
(the other agents behind the same NAT keep shipping) on routes other than the logins.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from html import escape
from typing import Any

import orjson
from starlette.requests import cookie_parser

from collector.config import WebConfig
from collector.stats import Stats

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Pages and fragments carry no inline script or style: scripts and styles are files under
# /ui/static/. SVG plots are markup with presentation attributes, which CSP leaves alone.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
# FastAPI's /docs and /redoc pages (when `api_docs` serves them) are an inline script that
# loads Swagger UI / ReDoc from jsDelivr: they get their own, wider policy.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# A downloaded readiness report (`.../report.html`) is one self-contained page whose style
# is inline: it may have that style and nothing else (no script, no fetch, no form).
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
STATIC_PREFIX = "/ui/static/"
# Routes whose whole point is to check a secret sent in the body: never let through for an
# address over its failure budget, whatever credential rides along.
LOGIN_PATHS = ("/ui/login", "/api/v1/enroll")
# Probes of a load balancer or an orchestrator: no credential, never throttled (a health
# check sharing an address with a client that guessed keys must not take a replica out).
HEALTH_PATHS = ("/healthz", "/readyz")
UI_COOKIE = "qs_session"  # collector/api/auth.py SESSION_COOKIE
AGENT_KEY_PREFIX = "qsa_"


def security_headers(path: str, docs_paths: Iterable[str | None] = ()) -> list[tuple[bytes, bytes]]:
    """The headers every answer to `path` carries (a header the route set wins)."""
    if path in docs_paths:
        csp = DOCS_CSP
    elif path.endswith("/report.html"):
        csp = REPORT_CSP
    else:
        csp = CSP
    out = [(b"content-security-policy", csp.encode()), *HEADERS]
    if (path.startswith(("/ui", "/api/")) and not path.startswith(STATIC_PREFIX)) or (
        path == "/metrics"
    ):
        out.append((b"cache-control", b"no-store"))
    return out


# --------------------------------------------------------------------------- addresses


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(addr: str, trusted: tuple[Network, ...]) -> bool:
    ip = _ip(addr)
    return ip is not None and any(ip in net for net in trusted)


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope.get("headers") or () if k == name]


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For hop that is not a trusted proxy (a client can write the
    left part of the header, never the hops the proxies appended)."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h for v in _header_values(scope, b"x-forwarded-for") for h in v.split(",")]
    addr = peer
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break  # garbage written by the client: the last proxy's view stands
        addr = str(ip)
        if not any(ip in net for net in trusted):
            break
    return addr


def failure_key(addr: str) -> str:
    """Whose failure budget a client address spends: an IPv4 address its own, an IPv6
    address its /64 (one site's prefix: a client there can pick any address in it)."""
    if ":" not in addr:
        return addr  # IPv4 (or "unknown"): as it is, without parsing
    ip = _ip(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped) if isinstance(ip, ipaddress.IPv6Address) else addr


def forwarded_scheme(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """X-Forwarded-Proto from a trusted proxy (`https` behind a TLS front), else None."""
    peer = str((scope.get("client") or ("", 0))[0])
    if not trusted or not _trusted(peer, trusted):
        return None
    values = _header_values(scope, b"x-forwarded-proto")
    proto = values[-1].split(",")[-1].strip().lower() if values else ""
    return proto if proto in ("http", "https") else None


# --------------------------------------------------------------------------- buckets


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """Token buckets by key: `burst` tokens, refilled at `rate` a second; the least recently
    used key is forgotten beyond `max_keys` (a forgotten key starts full again)."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._b: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._b)

    def _get(self, key: str, now: float) -> _Bucket:
        b = self._b.get(key)
        if b is None:
            b = self._b[key] = _Bucket(self.burst, now)
            if len(self._b) > self.max_keys:
                self._b.popitem(last=False)
        else:
            self._b.move_to_end(key)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
        return b

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` has a whole token (0: it has one now). Takes nothing."""
        b = self._b.get(key)
        if b is None:
            return 0.0
        tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str, now: float) -> float:
        """Take a token: 0 when there was one, else the seconds until there is one (and
        nothing is taken)."""
        b = self._get(key, now)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate

    def spend(self, key: str, now: float) -> None:
        """Take a token whether or not one is there (down to empty)."""
        b = self._get(key, now)
        b.tokens = max(0.0, b.tokens - 1.0)


class Throttle:
    """The collector's throttles, driven by `Security` with the time passed in."""

    def __init__(self, cfg: WebConfig) -> None:
        self.cfg = cfg
        rate = cfg.auth_failures_max / cfg.auth_failures_window_s
        self.failures = (
            Buckets(rate, cfg.auth_failures_max, cfg.max_tracked) if cfg.auth_failures_max else None
        )
        self.partners = (
            Buckets(cfg.partner_requests_per_s, cfg.partner_burst, cfg.max_tracked)
            if cfg.partner_requests_per_s
            else None
        )
        self.working: OrderedDict[str, None] = OrderedDict()  # credential hashes seen working

    def blocked_for(self, addr: str, now: float) -> float:
        """Seconds `addr` must wait before it may try a credential again (0: it may)."""
        return self.failures.wait(addr, now) if self.failures is not None else 0.0

    def failed(self, addr: str, cred: str | None, now: float) -> None:
        if self.failures is not None:
            self.failures.spend(addr, now)
        if cred is not None:
            self.working.pop(cred, None)

    def worked(self, cred: str) -> None:
        self.working[cred] = None
        self.working.move_to_end(cred)
        if len(self.working) > self.cfg.max_tracked:
            self.working.popitem(last=False)

    def partner_request(self, cred: str, now: float) -> float:
        """Count a request of a partner key seen working: 0, or the seconds to wait."""
        if self.partners is None or cred not in self.working:
            return 0.0
        return self.partners.take(cred, now)


# --------------------------------------------------------------------------- middleware


def credential(scope: Scope) -> tuple[str, bool] | None:
    """(SHA-256 of the credential the request carries, is it a partner's), or None: the
    bearer key, else the support pages' cookie."""
    key = ""
    for auth in _header_values(scope, b"authorization"):
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip()
    if not key and scope["path"].startswith("/ui"):
        for raw in _header_values(scope, b"cookie"):
            key = cookie_parser(raw).get(UI_COOKIE, "") or key
    if not key:
        return None
    return hashlib.sha256(key.encode()).hexdigest(), not key.startswith(AGENT_KEY_PREFIX)


def _proves_credential(path: str, status: int) -> bool:
    """A 2xx from a route that checks the credential it was sent."""
    if not 200 <= status < 300 or path.startswith(LOGIN_PATHS) or path.startswith(STATIC_PREFIX):
        return False
    return path.startswith(("/api/", "/ui")) or path == "/metrics"


class Security:
    """Pure ASGI middleware: headers on every answer, the throttles before the routes.

    `request.state.client_address` is the client's address as the throttles see it."""

    def __init__(
        self,
        app: ASGIApp,
        config: WebConfig,
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.stats = stats
        self.clock = clock
        self.trusted = parse_networks(config.trusted_proxies)
        self.throttle = Throttle(config)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        fastapi_app = scope.get("app")
        docs = (getattr(fastapi_app, "docs_url", None), getattr(fastapi_app, "redoc_url", None))
        extra = security_headers(path, docs)
        addr = client_address(scope, self.trusted)
        scope.setdefault("state", {})["client_address"] = addr
        scheme = forwarded_scheme(scope, self.trusted)
        if scheme:
            scope["scheme"] = scheme
        now = self.clock()
        cred = credential(scope)
        h = cred[0] if cred else None
        budget = failure_key(addr)
        wait = self.throttle.blocked_for(budget, now)
        if path in HEALTH_PATHS:
            wait = 0.0
        if wait and (h is None or h not in self.throttle.working or path.startswith(LOGIN_PATHS)):
            self.stats.throttle("auth_failures")
            why = (
                f"too many failed authentications from {addr}: try again in "
                f"{math.ceil(wait)} s (web.auth_failures_max)"
            )
            await _too_many(send, path, why, wait, extra)
            return
        if cred and cred[1]:
            wait = self.throttle.partner_request(cred[0], now)
            if wait:
                self.stats.throttle("partner_rate")
                cfg = self.throttle.cfg
                why = (
                    f"request rate over this partner's limit ({cfg.partner_requests_per_s:g}/s, "
                    f"bursts of {cfg.partner_burst}; web.partner_requests_per_s): try again in "
                    f"{math.ceil(wait)} s"
                )
                await _too_many(send, path, why, wait, extra)
                return
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if h is not None and status != 401 and _proves_credential(path, status):
                    self.throttle.worked(h)  # before the client can send its next request
                headers = list(message.get("headers") or [])
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in have]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if status == 401:
                self.stats.auth_failure()
                self.throttle.failed(budget, h, self.clock())


async def _too_many(
    send: Send, path: str, why: str, wait: float, extra: list[tuple[bytes, bytes]]
) -> None:
    if path.startswith("/ui"):
        body = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            "<title>Too many requests</title></head><body><main>"
            f'<h1>Too many requests</h1><p role="alert">{escape(why)}.</p>'
            '<p><a href="/ui/login">Back to the login page</a></p></main></body></html>'
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = orjson.dumps({"detail": why})
        ctype = b"application/json"
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
