"""Collector replicas behind a real HAProxy, for the replica test and bench/replicas.py:
`qos-scout collector serve` processes on one database, HAProxy on loopback in front of them,
and a load generator posting result batches through it as agents do."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent.cli.stack import Stack, wait_for
from agent.wire.results import SCHEMA_VERSION
from tests.collector.pg import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# The backend of deploy/haproxy/haproxy.cfg (balance, health check, retries, redispatch)
# without TLS; `check` is the health check's timing. X-Served-By names the replica.
HAPROXY_CFG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 90s
    timeout server 90s
frontend collectors_in
    bind 127.0.0.1:{port}
    default_backend collectors
backend collectors
    balance roundrobin
    retries 2
    option redispatch 1
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server check {check}
{check_timeout}{pins}{servers}
"""
FAST_CHECK = "inter 250ms fall 2 rise 2"
SHIPPED_CHECK = "inter 2s"  # deploy/haproxy/haproxy.cfg (fall 3, rise 2: HAProxy's defaults)
SHIPPED_CHECK_TIMEOUT = "5s"  # its `timeout check`


def start_replicas(stack: Stack, n: int, db_url: str, config: dict[str, Any]) -> list[int]:
    """`n` collector processes (c1, c2, ...) on `db_url` with `config`; their ports, once each
    answers /readyz."""
    path = stack.workdir / "collector.yml"
    path.write_text(yaml.safe_dump(config))
    ports = [free_port() for _ in range(n)]
    for i, port in enumerate(ports):
        stack.spawn(f"c{i + 1}", ["collector", "serve", "--config", str(path), "--db", db_url,
                                  "--listen", f"127.0.0.1:{port}"])  # fmt: skip
    for i, port in enumerate(ports):

        def up(name: str = f"c{i + 1}", p: int = port) -> bool:
            if not stack.alive(name):
                raise AssertionError(f"{name} exited:\n{stack.log_tail(name)}")
            return httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200

        wait_for(f"replica c{i + 1}", up, 60)
    return ports


def start_haproxy(
    stack: Stack, ports: list[int], check: str = FAST_CHECK, port: int | None = None,
    pins: dict[str, str] | None = None, check_timeout: str | None = None,
) -> str:  # fmt: skip
    """HAProxy on a loopback port (`port`, or a free one) in front of the replicas; its URL
    once every replica answered through it. `pins` sends the requests of an agent key to
    one replica (by name, c1...) while that replica is up. `check_timeout`: the backend's
    `timeout check` (unset, HAProxy times a check out at its `inter`)."""
    port = port or free_port()
    servers = "\n".join(f"    server c{i + 1} 127.0.0.1:{p}" for i, p in enumerate(ports))
    pinned = "".join(
        f'    use-server {server} if {{ req.hdr(authorization) -m str "Bearer {key}" }}\n'
        for key, server in (pins or {}).items()
    )
    cfg = stack.workdir / "haproxy.cfg"
    cfg.write_text(
        HAPROXY_CFG.format(
            port=port,
            servers=servers,
            check=check,
            pins=pinned,
            check_timeout=f"    timeout check {check_timeout}\n" if check_timeout else "",
        )
    )
    out = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"haproxy -c refused {cfg}: {out.stdout}{out.stderr}")
    log = open(stack.workdir / "haproxy.log", "ab")
    stack.procs["haproxy"] = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def all_up() -> bool:
        seen = {httpx.get(f"{url}/readyz", timeout=2).headers.get("x-served-by")
                for _ in range(2 * len(ports))}  # fmt: skip
        return len(seen) == len(ports)

    wait_for("HAProxy to reach every replica", all_up, 30)
    return url


_T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def icmp_result(rtt_avg: float, target: str, seq: int) -> dict[str, Any]:
    """A wire ProbeResult of the icmp probe with a fresh id."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": str(uuid.uuid4()),
        "probe": "icmp",
        "target": target,
        "started_at": (_T0 + timedelta(milliseconds=seq)).isoformat(),
        "duration_ms": 1000.0,
        "success": True,
        "measurement": {
            "sent": 10,
            "received": 10,
            "loss_pct": 0.0,
            "jitter_ms": 1.0,
            "rtt_ms": {"min": rtt_avg / 2, "avg": rtt_avg, "median": rtt_avg, "p95": rtt_avg,
                       "max": rtt_avg * 2},
        },
    }  # fmt: skip


@dataclass
class Loader:
    """Threads posting result batches through HAProxy as one agent; a batch is re-sent (the
    same ids) until the collector answers it, as an agent's spool does. Keeps what it
    produced, what was answered, and each batch that needed more than one request."""

    url: str
    site_id: str
    agent_id: str
    key: str
    batch: int = 10
    sent: set[str] = field(default_factory=set)
    stored: int = 0
    duplicates: int = 0
    batches: int = 0
    retried: list[tuple[float, float, int]] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def items(self, n: int, rtt_avg: float = 10.0, target: str = "192.0.2.10") -> list[Any]:
        with self.lock:
            self._seq += n
            first = self._seq - n
        return [icmp_result(rtt_avg, target, first + i) for i in range(n)]

    def post(self, client: httpx.Client, items: list[dict[str, Any]]) -> str:
        """Send one batch until it is answered; returns the replica that answered it."""
        deadline = time.monotonic() + 30
        first_failure, attempts = 0.0, 0
        while True:
            attempts += 1
            try:
                r = client.post("/api/v1/results", json={"results": items})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            first_failure = first_failure or time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError("a batch was not answered within 30 s")
            time.sleep(0.05)  # the retry pause of a client's backoff
        answered = time.monotonic()
        body = r.json()
        statuses = {i["status"] for i in body["items"]}
        if not statuses <= {"stored", "duplicate"}:
            raise AssertionError(f"items refused: {body}")
        server = r.headers.get("x-served-by", "?")
        with self.lock:
            self.sent.update(i["id"] for i in items)
            self.stored += body["stored"]
            self.duplicates += body["duplicates"]
            self.batches += 1
            self.served_by[server] += 1
            self.answered_at.append(answered)
            if attempts > 1:
                self.retried.append((first_failure, answered, attempts - 1))
        return server

    def run(self) -> None:
        with self.client() as c:
            while not self.stop.is_set():
                self.post(c, self.items(self.batch))

    def after(self, t: float) -> tuple[int, float]:
        """Requests retried for batches that first failed at or after `t`, and the time from
        `t` to the answer of the last of them (0 when none failed)."""
        late = [(f, a, n) for f, a, n in self.retried if f >= t]
        return sum(n for _, _, n in late), max((a - t for _, a, _ in late), default=0.0)


def spool_left(path: Path) -> int:
    """Results an agent's spool still holds to ship."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM results WHERE rejected IS NULL").fetchone()[0])
    finally:
        db.close()
