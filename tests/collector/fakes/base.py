"""The fakes' HTTP server: a threaded http.server on loopback that records every call and
hands each request to the fake's `handle`; a `Refused` raised there is a 4xx answer."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Refused(Exception):
    """A refusal: `status` with `{"error": message}`, or `body` where the service answers
    in a shape of its own."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.body = status, message, body


class Drop(Exception):
    """Close the connection without an answer (a lost answer after the work was done)."""


class Hang(Exception):
    """Answer nothing until the fake's `released` is set, then close the connection."""


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    data: Any = field(default=None)

    def json(self) -> Any:
        return json.loads(self.body)


class Fake:
    """Subclasses implement `handle(call) -> (status, body)`; body is JSON or bytes."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.refusals: list[tuple[Call, str]] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.drop_next_create = False  # the next create is done, its answer lost
        self.hang_next_create = False  # ... done, its answer held until `released`
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                u = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                call = Call(
                    self.command, u.path, {k: v[0] for k, v in parse_qs(u.query).items()},
                    {k.lower(): v for k, v in self.headers.items()}, body,
                )  # fmt: skip
                try:
                    with fake.lock:
                        status, out = fake.handle(call)
                except Refused as exc:
                    status = exc.status
                    out = exc.body if exc.body is not None else {"error": exc.message}
                    fake.refusals.append((call, exc.message))
                except (Drop, Hang) as exc:
                    if isinstance(exc, Hang):
                        fake.released.wait(60)
                    call.status = -1
                    fake.calls.append(call)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                call.status = status
                fake.calls.append(call)
                raw = out if isinstance(out, bytes) else json.dumps(out).encode()
                self.send_response(status)
                ctype = "text/plain" if isinstance(out, bytes) else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, call: Call) -> tuple[int, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def created(self) -> None:
        """Called by `handle` once a create (a PSA ticket, a chat message, a PagerDuty
        trigger) is made: loses or holds its answer when the test asked for it."""
        if self.drop_next_create:
            self.drop_next_create = False
            raise Drop()
        if self.hang_next_create:
            self.hang_next_create = False
            raise Hang()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def ok_calls(self) -> list[tuple[str, str]]:
        """(method, path) of the calls answered 2xx, in order."""
        return [(c.method, c.path) for c in self.calls if 200 <= c.status < 300]


def json_body(call: Call) -> Any:
    if not call.headers.get("content-type", "").startswith("application/json"):
        raise Refused(415, f"Content-Type must be application/json, not "
                           f"{call.headers.get('content-type')!r}")  # fmt: skip
    try:
        return json.loads(call.body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


def need(obj: Any, *keys: str) -> None:
    if not isinstance(obj, dict):
        raise Refused(400, "the body must be a JSON object")
    missing = [k for k in keys if obj.get(k) in (None, "")]
    if missing:
        raise Refused(400, f"required fields missing: {', '.join(missing)}")
