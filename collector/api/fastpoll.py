"""The agents' job long poll (`GET /api/v1/agent/jobs`): the wait itself, shared by the
FastAPI route and `FastJobPoll`, the pure ASGI handler that answers the ordinary poll
without the framework around it.

An idle fleet's cost is one poll per agent per wait (10,000 agents at 60 s: ~167 polls/s)
and most of a poll's CPU was the layers around a handler that has nothing to do
(docs/benchmarks.md, "Long-poll"). `FastJobPoll` sits in front of the app's middleware
stack (`collector.api.app` puts it there) and takes a request only when the answer can be
nothing but the route's: a GET of exactly that path with no body, one `Authorization:
Bearer` header with an agent key that is in the authentication cache, an address the
failure throttle does not hold back, and `wait`/`spool` written as plain decimals in range.
For those it does what the stack's layers would: the security headers, the throttle's
note that the key works, the access log line. Anything else (no key, a key not cached, a
malformed or unknown parameter, a body, a throttled address) goes on to the whole stack
and the FastAPI route, which give the error bodies (401, 413, 422, 429) and fill the
cache; `tests/collector/test_fastpoll.py` sends the same requests to both paths and
compares status, headers and bodies.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_plus

from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse

from collector import jobs
from collector.api.security import (
    AGENT_KEY_PREFIX,
    Security,
    client_address,
    failure_key,
    security_headers,
)
from collector.errors import CollectorError
from collector.keys import hash_secret
from collector.logs import access_line, access_log

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/api/v1/agent/jobs"
MAX_WAIT_S = 60.0
MAX_SPOOL = 1_000_000_000  # the route's `spool` bound (le=)
# What the fast path parses itself; any other spelling is the route's to judge.
_WAIT = re.compile(r"(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,6})?")
_SPOOL = re.compile(r"0|[1-9][0-9]{0,9}")
EMPTY = b'{"jobs":[]}'
_EMPTY_HEADERS = [
    (b"content-length", str(len(EMPTY)).encode()),
    (b"content-type", b"application/json"),
]


async def wait_for_jobs(
    st: Any,
    agent: dict[str, Any],
    wait: float,
    spool: int | None,
    disconnected: Callable[[], Awaitable[bool]],
) -> list[dict[str, Any]]:
    """Record the agent's contact (and its spool depth), then answer as soon as a job is
    queued for its site, or after `wait` s (at most MAX_WAIT_S). A waiting poll queries once
    when it starts and once when woken (collector/jobwake.py), and at its deadline only if
    a notification may have been lost. `st` is the app's `AppState`."""
    wait = max(0.0, min(wait, MAX_WAIT_S))
    deadline = time.monotonic() + wait
    site_id = agent["site_id"]
    st.note_seen(agent["id"], st.clock(), spool)  # `spool`: results it holds unshipped

    def take() -> list[dict[str, Any]]:
        now = st.clock()
        with st.store.read() as conn:
            if not jobs.has_queued(conn, site_id, now):
                return []
        with st.store.write() as conn:
            handed = jobs.take_jobs(conn, agent, now)
        for _ in handed:
            st.waker.arm_lease(now + jobs.DISPATCH_LEASE_S, site_id)
        return handed

    async def look() -> list[dict[str, Any]]:
        stamp = st.waker.dirty.get(site_id)
        found: list[dict[str, Any]] = await run_in_threadpool(take)
        if not found:
            st.waker.settle(site_id, stamp)
        return found

    waker = st.waker
    sub = waker.subscribe(site_id)  # before the first look: a job queued after it wakes
    try:
        found: list[dict[str, Any]] = []
        if waker.must_look(site_id)[0]:
            found = await look()
        while not found and not waker.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not await sub.wait(remaining) and sub.reliable:
                break  # nothing was queued for the site: no need to look
            if waker.stopping or await disconnected():
                break
            found = await look()
    finally:
        sub.close()
    return found


def poll_params(query: bytes) -> tuple[float, int | None] | None:
    """(wait, spool) of a query string the fast path may answer, else None."""
    wait, spool = 0.0, None
    seen: set[bytes] = set()
    if not query:
        return wait, spool
    for part in query.split(b"&"):
        name, eq, raw = part.partition(b"=")
        if not eq or name in seen:
            return None
        seen.add(name)
        try:
            value = unquote_plus(raw.decode("ascii"))
        except UnicodeDecodeError:
            return None
        if name == b"wait" and _WAIT.fullmatch(value):
            wait = float(value)
        elif name == b"spool" and _SPOOL.fullmatch(value) and int(value) <= MAX_SPOOL:
            spool = int(value)
        else:
            return None
    return wait, spool


def one_header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the request's header `name` (lower case) if it has exactly one."""
    found = None
    for key, value in scope.get("headers") or ():
        if key == name:
            if found is not None:
                return None
            found = value
    return found


def bearer_key(scope: Scope) -> str | None:
    """The key of the request's one `Authorization: Bearer` header, else None."""
    found = one_header(scope, b"authorization")
    if found is None:
        return None
    scheme, _, token = found.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def find_security(app: Any) -> Security | None:
    """The `Security` middleware in a built middleware stack (each layer's `.app` is the
    next), or None."""
    for _ in range(32):
        if isinstance(app, Security):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class FastJobPoll:
    """Pure ASGI handler in front of the app's middleware stack: answer the ordinary job
    poll itself, doing for it what the stack's middlewares do (the security headers, the
    failure throttle's bookkeeping, the access log line), and pass anything else on."""

    def __init__(self, app: ASGIApp, state: Any, security: Security, owner: Any = None) -> None:
        self.app = app
        self.st = state
        self.security = security
        self.headers = security_headers(PATH)
        self.empty_headers = [*_EMPTY_HEADERS, *self.headers]
        self.taken = 0  # polls answered here (tests check the fast path was the one used)
        if owner is not None:
            owner.state.fast_poll = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        params = poll_params(scope.get("query_string", b""))
        key = bearer_key(scope) if params is not None else None
        if params is None or key is None or not key.startswith(AGENT_KEY_PREFIX) or has_body(scope):
            await self.app(scope, receive, send)
            return
        st, sec = self.st, self.security
        await st.check_epoch()
        agent = st.cached_agent(key)
        addr = client_address(scope, sec.trusted)
        budget = failure_key(addr)
        if agent is None or sec.throttle.blocked_for(budget, sec.clock()):
            # the route looks the key up and caches it; the throttle answers for itself
            await self.app(scope, receive, send)
            return
        self.taken += 1
        t0 = time.perf_counter()
        scope.setdefault("state", {})["client_address"] = addr
        h = hash_secret(key)

        def disconnected() -> Awaitable[bool]:  # asked only when woken before the deadline
            return Request(scope, receive).is_disconnected()

        try:
            found = await wait_for_jobs(st, agent, params[0], params[1], disconnected)
        except CollectorError as exc:  # as the app's exception handler answers it
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            reply = JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)
            if exc.status == 401:
                sec.stats.auth_failure()
                sec.throttle.failed(budget, h, sec.clock())
            await self._send(reply, scope, receive, send, t0, addr)
            return
        sec.throttle.worked(h)
        if not found:
            await send(
                {"type": "http.response.start", "status": 200, "headers": self.empty_headers}
            )
            await send({"type": "http.response.body", "body": EMPTY})
            log_line(scope, 200, t0, addr)
            return
        await self._send(
            JSONResponse(jsonable_encoder({"jobs": found})), scope, receive, send, t0, addr
        )

    async def _send(
        self, reply: JSONResponse, scope: Scope, receive: Receive, send: Send, t0: float, addr: str
    ) -> None:
        have = {k for k, _ in reply.raw_headers}
        reply.raw_headers += [(k, v) for k, v in self.headers if k not in have]
        await reply(scope, receive, send)
        log_line(scope, reply.status_code, t0, addr)


def log_line(scope: Scope, status: int, t0: float, addr: str) -> None:
    """The line `collector.logs.AccessLog` writes for every request, when enabled."""
    if access_log.isEnabledFor(logging.INFO):
        access_line(scope, status, t0, addr)


def has_body(scope: Scope) -> bool:
    """A request declaring a body (the body limit and NUL refusal are the stack's)."""
    for name, value in scope.get("headers") or ():
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False
