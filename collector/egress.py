"""Requests to URLs partners give (their PSA, chat and paging services): an SSRF surface.

Only `https://` to public addresses, unless the host is in the operator's
`channels.allow_hosts` (then `http://` and private or loopback addresses too); no userinfo;
no redirect followed; every request of one delivery ends by one deadline; an answer larger
than `channels.max_response_bytes` is refused. Errors are `DeliveryError`s with URLs
redacted (`notifiers.redact_text`), so no secret in a URL reaches a log line.

The name is resolved and checked before each request; a name that resolves to a public
address for the check and to a private one for the connection (DNS rebinding) is not caught
here: an operator who fears it runs the collector behind an egress proxy or firewall that
refuses private destinations.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import httpx

from collector.config import ChannelsConfig
from collector.notifiers import DeliveryError, redact_text, redact_url

MAX_URL = 2000


def _allowed(cfg: ChannelsConfig, u: httpx.URL) -> bool:
    host = u.host.lower()
    port = u.port or {"http": 80, "https": 443}.get(u.scheme, 0)
    return any(a.lower() in (host, f"{host}:{port}") for a in cfg.allow_hosts)


def url_problem(cfg: ChannelsConfig, url: str) -> str | None:
    """Why `url` may not be a channel's URL (None: it may), without resolving its name."""
    if len(url) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "is not a URL"
    if u.scheme not in ("http", "https") or not u.host:
        return "must be an https:// URL with a host"
    if u.userinfo:
        return "must not carry a user or password (the credentials have fields of their own)"
    if _allowed(cfg, u):
        return None
    if u.scheme != "https":
        return "must be https:// (plain http only for hosts the operator allows)"
    try:
        ip = ipaddress.ip_address(u.host)
    except ValueError:
        return None
    if not ip.is_global:
        return "must not be a private, loopback or reserved address"
    return None


def _check_resolved(cfg: ChannelsConfig, u: httpx.URL) -> None:
    if _allowed(cfg, u):
        return
    try:
        infos = socket.getaddrinfo(u.host, u.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise DeliveryError(f"{redact_url(u)}: cannot resolve the name: {exc}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not ip.is_global:
            raise DeliveryError(
                f"{redact_url(u)} resolves to {ip}, a private, loopback or reserved address: "
                "refused (the operator allows such hosts in channels.allow_hosts)"
            )


class Egress:
    """The HTTP client of one delivery: every request it makes ends by `deadline`."""

    def __init__(self, cfg: ChannelsConfig, now_monotonic: float | None = None) -> None:
        self.cfg = cfg
        start = time.monotonic() if now_monotonic is None else now_monotonic
        self.deadline = start + cfg.timeout_s
        self.client = httpx.Client(follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Egress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        """One request; DeliveryError on a refused URL, a network error, a timeout, a
        redirect, an answer too large or any status but 2xx (the outbox retries)."""
        problem = url_problem(self.cfg, url)
        if problem:
            raise DeliveryError(f"{what}: the URL {problem}")
        u = httpx.URL(url)
        _check_resolved(self.cfg, u)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeliveryError(f"{what}: out of time ({self.cfg.timeout_s:g} s per delivery)")
        try:
            with self.client.stream(method, u, timeout=left, **kw) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > self.cfg.max_response_bytes:
                        raise DeliveryError(
                            f"{what}: answer larger than {self.cfg.max_response_bytes} bytes"
                        )
                    if time.monotonic() > self.deadline:
                        raise DeliveryError(f"{what}: answer still coming at the deadline")
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{what} {redact_url(u)}: {redact_text(repr(exc))}") from None
        out = httpx.Response(resp.status_code, headers=resp.headers, content=bytes(body))
        out.request = resp.request
        if resp.is_redirect:
            raise DeliveryError(f"{what}: answered a redirect (HTTP {resp.status_code}), "
                                "not followed")  # fmt: skip
        if resp.status_code // 100 != 2:
            answer = redact_text(out.text[:300])
            raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {answer}")
        return out


def json_of(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise DeliveryError(f"{what}: the answer is not JSON") from None
