"""The agents' config check (`GET /api/v1/agent/config` with `If-None-Match`): a pure ASGI
handler that answers the ordinary "not modified" from memory, without the framework, the
thread pool or the database.

Every agent asks once a minute (`central.interval_s`), so 10,000 agents make ~167 checks a
second, and nearly every answer is 304. Through the route each cost the collector ~1.4 ms
of CPU (the middleware stack, a thread hop, three queries, the profiles' validation and
merge, a hash), ten times a job poll answered by `FastJobPoll` (docs/benchmarks.md,
"Config checks"). The route keeps each site's config version in the app state; the version
is dropped on every replica when the config epoch moves (`tenants.bump_config_epoch`, in
the transaction of any profile change or a site's move to another customer; read with the
other epochs at most once a second). `FastConfig` takes a request only when the route
could answer nothing but 304: a GET of exactly that path, no query and no body, one agent
key that is in the authentication cache, an address the failure throttle does not hold
back, one `If-None-Match` header (within the route's length limit) naming the version kept
for the agent's site. Anything else goes on to the whole stack and the route, which gives
the config (200), the errors, and fills the cache. `tests/collector/test_fastconfig.py`
sends the same requests to both paths and compares status, headers and bodies.
"""

from __future__ import annotations

import time
from typing import Any

from collector.api.fastpoll import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    bearer_key,
    has_body,
    log_line,
    one_header,
)
from collector.api.security import (
    AGENT_KEY_PREFIX,
    Security,
    client_address,
    failure_key,
    security_headers,
)
from collector.keys import hash_secret

PATH = "/api/v1/agent/config"
MAX_IF_NONE_MATCH = 200  # the route's Header(max_length=...)


def names_version(if_none_match: str, etag: str) -> bool:
    """True when an `If-None-Match` value lists `etag` (the route's test and this one)."""
    return etag in [t.strip() for t in if_none_match.split(",")]


def if_none_match(scope: Scope) -> str | None:
    """The value of the request's one `If-None-Match` header within the route's limit,
    else None."""
    found = one_header(scope, b"if-none-match")
    if found is None or len(found) > MAX_IF_NONE_MATCH:
        return None
    try:
        return str(found.decode("ascii"))
    except UnicodeDecodeError:
        return None


class FastConfig:
    """Pure ASGI handler in front of the app's middleware stack: answer the config check
    whose answer is 304 itself, doing for it what the stack's middlewares do (the security
    headers, the failure throttle's note that the key works, the access log line), and pass
    anything else on."""

    def __init__(self, app: ASGIApp, state: Any, security: Security, owner: Any = None) -> None:
        self.app = app
        self.st = state
        self.security = security
        self.headers = security_headers(PATH)
        self.taken = 0  # checks answered here (tests check the fast path was the one used)
        if owner is not None:
            owner.state.fast_config = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "GET"
            or scope.get("query_string")
            or has_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        key = bearer_key(scope)
        tags = if_none_match(scope)
        if key is None or tags is None or not key.startswith(AGENT_KEY_PREFIX):
            await self.app(scope, receive, send)
            return
        st, sec = self.st, self.security
        await st.check_epoch()
        agent = st.cached_agent(key)
        version = st.config_version(agent["site_id"]) if agent is not None else None
        addr = client_address(scope, sec.trusted)
        etag = f'"{version}"'
        if (
            version is None
            or not names_version(tags, etag)
            or sec.throttle.blocked_for(failure_key(addr), sec.clock())
        ):
            await self.app(scope, receive, send)
            return
        self.taken += 1
        t0 = time.perf_counter()
        sec.throttle.worked(hash_secret(key))
        headers = [(b"etag", etag.encode()), *self.headers]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        log_line(scope, 304, t0, addr)
