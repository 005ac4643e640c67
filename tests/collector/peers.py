"""Real notification peers for the tests: an HTTP webhook receiver, an SMTP server
(aiosmtpd) and Prometheus Alertmanager, all on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.collector.pg import free_port


class WebhookReceiver:
    """Records every POST (headers, body); answers 500 to the first `fail_first` ones."""

    def __init__(self, fail_first: int = 0, port: int | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls += 1
                if outer.calls <= outer.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"try later")
                    return
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_collector(port: int, *args: str) -> subprocess.Popen[bytes]:
    """`qos-scout collector serve ARGS` on 127.0.0.1:`port`, once its /readyz answers 200;
    stderr is kept in a pipe for the test to read."""
    exe = Path(sys.executable).parent / "qos-scout"
    proc = subprocess.Popen(
        [str(exe), "collector", "serve", *args, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "the collector to start")
    return proc


def wait_for(cond: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Alertmanager:
    """Debian's prometheus-alertmanager on a loopback port with a throwaway config."""

    BINARIES = ("prometheus-alertmanager", "alertmanager")

    @classmethod
    def binary(cls) -> str | None:
        for b in cls.BINARIES:
            if path := shutil.which(b):
                return path
        return None

    def __init__(self, binary: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="qs-am-"))
        (self.dir / "am.yml").write_text(
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'am.yml'}",
                f"--storage.path={self.dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "log", "wb"),
        )

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 30, "alertmanager to be ready")

    def alerts(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
