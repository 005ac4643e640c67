"""Request body size limits on every route: an ASGI middleware that refuses a body larger than
its route's limit with a 413 naming the limit, before the route reads it.

The agents' routes (result ingest, job status) take `limits.max_body_bytes`; every other
route `limits.max_request_bytes`. A declared `Content-Length` over the limit is answered
at once, without reading the body; a body without one (chunked) is counted as it streams
and cut as soon as it passes the limit, so no route ever holds more than its limit, and
an oversized body is refused before the credential is even looked at. What it refuses on
the ingest route is counted in `qos_scout_ingest_errors_total{code="413"}`, as the route's
own refusals are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException

from collector.config import LimitsConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes whose bodies come from agents (batches of results, readiness reports).
AGENT_BODY_PREFIXES = ("/api/v1/results", "/api/v1/agent/")
COUNTED = frozenset({"/api/v1/results"})  # refusals counted as ingest errors


def body_limit(limits: LimitsConfig, path: str) -> tuple[int, str]:
    """The body limit of a request path, and the config key it comes from."""
    if path.startswith(AGENT_BODY_PREFIXES):
        return limits.max_body_bytes, "limits.max_body_bytes"
    return limits.max_request_bytes, "limits.max_request_bytes"


def too_large(limit: int, key: str) -> str:
    return f"request body is larger than {limit} bytes ({key})"


class BodyLimit:
    """Pure ASGI middleware: refuse (413) a request body larger than its route's limit."""

    def __init__(self, app: ASGIApp, limits: LimitsConfig) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, key = body_limit(self.limits, scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            _count(scope)
            await _refuse(send, too_large(limit, key))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    _count(scope)
                    # An HTTPException: FastAPI's body parsing and the routes pass it on, and
                    # the app's exception handler answers it (413 with this detail).
                    raise HTTPException(413, detail=too_large(limit, key))
            return message

        await self.app(scope, counted, send)


def _count(scope: Scope) -> None:
    if scope.get("path") in COUNTED:
        qs = getattr(getattr(scope.get("app"), "state", None), "qs", None)
        if qs is not None:
            qs.stats.ingest_error(413)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we see it
    return None


async def _refuse(send: Send, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
