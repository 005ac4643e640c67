"""Refuse NUL characters (U+0000) anywhere in a request, with a 422 naming where: in the
path, a query parameter, or a field of a JSON or form body.

PostgreSQL text and JSONB cannot hold U+0000, so such a value used to reach the database
and fail there (a 500 on every route that reads or writes a string); SQLite stored it and
handed it back to pages and exports. No field of the API has a use for it.

A pure ASGI middleware placed inside the body-size limit (so it never holds more than the
route's limit): a body is only read ahead when its bytes can hold a NUL (`\\u0000` in JSON,
`%00` in a form); it is then handed on to the route unchanged. Compressed bodies (result
batches) are left to the ingest's per-item validation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NUL = "\x00"
# `\u0000` as a JSON escape: preceded by an even number of backslashes (an odd number
# would make it a literal backslash followed by `u0000`).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM_NUL = re.compile(rb"%00")


def refused(where: str) -> str:
    return f"{where}: NUL characters (U+0000, %00) are not allowed"


def _field(prefix: str, name: str) -> str:
    name = name.replace(NUL, "")
    return f"{prefix}.{name}" if name else prefix


def nul_path(value: Any, where: str) -> str | None:
    """The dotted path of the first string holding a NUL in a decoded JSON value."""
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if NUL in k:
                return f"{where}.{k.replace(NUL, '')} (key)"
            found = nul_path(v, f"{where}.{k}")
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = nul_path(v, f"{where}.{i}")
            if found:
                return found
    return None


def url_problem(scope: Scope) -> str | None:
    """Where a NUL sits in the request's path or query string, if anywhere."""
    if NUL in scope.get("path", ""):
        return refused("path")
    query = scope.get("query_string") or b""
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                return refused(_field("query", name))
        return refused("query")
    return None


def body_problem(content_type: str, body: bytes) -> str | None:
    """Where a NUL sits in a JSON or form body, if anywhere."""
    if content_type.startswith("application/json") or content_type.endswith("+json"):
        if not _JSON_NUL.search(body):
            return None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            # orjson refuses what the routes' own decoder (json) accepts, such as a lone
            # surrogate escape (\ud800): decode as the route will.
            try:
                value = json.loads(body)
            except ValueError:
                return None  # not JSON: the route answers that
        return refused(found) if (found := nul_path(value, "body")) else None
    if content_type.startswith("application/x-www-form-urlencoded"):
        if not _FORM_NUL.search(body):
            return None
        for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            if NUL in name or NUL in value:
                return refused(_field("body", name))
    return None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1")).lower()
    return ""


class RefuseNul:
    """Pure ASGI middleware: 422 for a request carrying a NUL character, naming where."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = url_problem(scope)
        if problem:
            await _answer(send, 422, problem)
            return
        ctype = _header(scope, b"content-type")
        readable = ctype.startswith(("application/json", "application/x-www-form-urlencoded"))
        if not readable or _header(scope, b"content-encoding") not in ("", "identity"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    await self.app(scope, _replay([message], receive), send)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except HTTPException as exc:  # the body-size limit cut the body
            await _answer(send, exc.status_code, str(exc.detail))
            return
        body = b"".join(chunks)
        problem = body_problem(ctype, body)
        if problem:
            await _answer(send, 422, problem)
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
