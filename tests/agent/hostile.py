"""A hostile collector for the agent's tests: a real HTTP server on loopback (a thread per
connection) that speaks the ingest and job-poll API but can answer each request badly.

It stores results by id like the real collector (a re-sent id answers `duplicate`), and
decides per request, in this order: a scripted fault popped from `faults` (garbage, a wrong
shape, a hang, a reset, ...); a whole-batch status when the batch holds an id of
`fail_batch` (id -> status: 500 forever for batches with that item, 400 for the whole
batch, ...) or 413 for more than `max_items`; per-item `rejected` for ids in `reject`; else
stored. Keys outside `keys` answer 401 with `revoked_detail`. Every request is recorded
(time, ids, answer).
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a scripted fault answers (status, headers, body); the special ones are handled below.
CANNED: dict[str, tuple[int, dict[str, str], bytes]] = {
    "garbage": (200, {"Content-Type": "application/json"}, b"\x00\xffnot json{{"),
    "lots": (200, {}, b'{"stored": "lots", "duplicates": 0, "rejected": 0, "items": []}'),
    "no_items": (200, {}, b'{"stored": 1, "duplicates": 0, "rejected": 0}'),
    "wrong_status": (
        200,
        {},
        b'{"stored":0,"duplicates":0,"rejected":0,"items":[{"index":0,"status":"maybe"}]}',
    ),
    "list": (200, {}, b"[1, 2, 3]"),
    "jobs_lots": (200, {}, b'{"jobs": "lots"}'),
    "moved": (301, {"Location": "https://collector.example/api/v1/results"}, b""),
    "deep": (200, {}, b"[" * 100_000 + b"]" * 100_000),
    "html500": (500, {"Content-Type": "text/html"}, b"<html><body>Internal error</body></html>"),
    "busy": (503, {"Retry-After": "1"}, b'{"detail": "overloaded"}'),
    "slow_down": (429, {"Retry-After": "1"}, b'{"detail": "too many requests"}'),
}
SPECIAL = {"hang", "reset", "huge", "short", "stored_then_garbage"}


@dataclass
class Seen:
    at: float
    path: str
    ids: list[str]
    answer: str


@dataclass
class Hostile:
    keys: set[str] = field(default_factory=lambda: {"good-key"})
    revoked_detail: str = "agent key revoked"
    faults: list[str] = field(default_factory=list)  # ingest faults, one per request
    job_faults: list[str] = field(default_factory=list)  # job-poll faults
    fail_batch: dict[str, int] = field(default_factory=dict)
    reject: dict[str, str] = field(default_factory=dict)
    max_items: int | None = None  # a larger batch answers 413
    hang_s: float = 8.0
    stored: dict[str, int] = field(default_factory=dict)  # id -> times answered "stored"
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._jobs(self)

            def do_POST(self) -> None:
                owner._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- answers

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        h.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        key = h.headers.get("Authorization", "").removeprefix("Bearer ")
        if key in self.keys:
            return True
        with self.lock:
            self.seen.append(Seen(time.monotonic(), h.path, [], "401"))
        self._send(h, 401, json.dumps({"detail": self.revoked_detail}).encode())
        return False

    def _special(self, h: BaseHTTPRequestHandler, fault: str) -> None:
        if fault == "hang":  # accept, read, never answer (until the client gives up)
            self.stopping.wait(self.hang_s)
        elif fault == "reset":  # RST instead of an answer
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        elif fault == "huge":  # an endless answer
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(2000):  # 128 MiB at most
                    h.wfile.write(chunk)
            except OSError:
                pass
        elif fault == "short":  # says 1000 bytes, sends 10, closes
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.write(b'{"stored":')
        h.close_connection = True

    def _jobs(self, h: BaseHTTPRequestHandler) -> None:
        if not self._authorized(h):
            return
        with self.lock:
            fault = self.job_faults.pop(0) if self.job_faults else None
            self.seen.append(Seen(time.monotonic(), h.path, [], fault or "jobs"))
        if fault in SPECIAL:
            self._special(h, fault)
        elif fault is not None:
            status, headers, body = CANNED[fault]
            self._send(h, status, body, headers)
        else:
            self.stopping.wait(0.5)  # a short long-poll
            self._send(h, 200, b'{"jobs": []}')

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        if not self._authorized(h):
            return
        if not h.path.startswith("/api/v1/results"):
            with self.lock:
                self.seen.append(Seen(time.monotonic(), h.path, [], "404"))
            self._send(h, 404, b'{"detail": "Not Found"}')
            return
        if h.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        items = json.loads(raw)["results"]
        ids = [str(i.get("id")) for i in items]
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
            failing = [self.fail_batch[i] for i in ids if i in self.fail_batch]
            if self.max_items is not None and len(ids) > self.max_items:
                failing.insert(0, 413)
            if fault is not None:
                answer = fault
            elif failing:
                answer = str(failing[0])
            else:
                answer = "ok"
            self.seen.append(Seen(time.monotonic(), h.path, ids, answer))
            if fault in (None, "stored_then_garbage") and not failing:
                body = self._ingest(ids)
        if fault == "stored_then_garbage":
            self._send(h, 200, b"<html>proxy error</html>", {"Content-Type": "text/html"})
        elif fault in SPECIAL:
            self._special(h, fault)
        elif fault is not None:
            status, headers, body = CANNED[fault]
            self._send(h, status, body, headers)
        elif failing:
            self._send(h, failing[0], json.dumps({"detail": f"batch refused ({failing[0]})"})
                       .encode())  # fmt: skip
        else:
            self._send(h, 200, body)

    def _ingest(self, ids: list[str]) -> bytes:
        out: dict[str, Any] = {"stored": 0, "duplicates": 0, "rejected": 0, "items": []}
        for n, rid in enumerate(ids):
            if rid in self.reject:
                status, error = "rejected", self.reject[rid]
                out["rejected"] += 1
            elif rid in self.stored:
                status, error = "duplicate", None
                out["duplicates"] += 1
            else:
                self.stored[rid] = 1
                status, error = "stored", None
                out["stored"] += 1
            out["items"].append({"index": n, "id": rid, "status": status, "error": error})
        return json.dumps(out).encode()

    def requests_with(self, rid: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if rid in s.ids]
