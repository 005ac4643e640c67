"""A collector, a responder and an agent as real processes on loopback, in one work directory.

Used by `qos-scout demo` and by the end-to-end and fault tests: every piece is started with
its own `qos-scout` command, talks over real sockets, logs to `<workdir>/<name>.log`, and is
stopped with SIGTERM (SIGKILL only after a grace period, or when asked for).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml


class StackError(Exception):
    """A process of the stack did not start or answered unexpectedly."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 for `kind` (TCP by default) right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_both() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise StackError("no port free for both TCP and UDP")


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; StackError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, OSError, StackError) as exc:
            last = exc
        time.sleep(every_s)
    raise StackError(
        f"timed out after {timeout_s:g} s waiting for {what}" + (f" ({last})" if last else "")
    )


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.collector_url = ""
        self.db_url = f"sqlite:///{self.workdir / 'collector.sqlite3'}"
        self.partner_key = ""
        self.partner_id = ""
        # The demo's admin user of the support portal (e-mail and password login).
        self.admin_email = "admin@demo.example.com"
        self.admin_password = "demo-" + secrets.token_urlsafe(12)
        self.site_id = ""
        self.customer_id = ""
        self.agent_metrics_port: int | None = None
        # The operator's /metrics scrape token, in a file the collector's config names.
        self.metrics_token = "scrape-" + secrets.token_urlsafe(24)
        self.metrics_token_file = self.workdir / "metrics-token"

    # ---------------------------------------------------------------- processes

    def command(self, *args: str) -> list[str]:
        """`qos-scout ARGS` with this interpreter (not `-m agent.cli.main`, which would load
        agent.cli.main twice: as __main__ and as itself)."""
        return [
            sys.executable,
            "-c",
            "import sys; from agent.cli.main import main; sys.exit(main())",
            *args,
        ]

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(self.command(*args), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def _check_alive(self, name: str) -> None:
        if not self.alive(name):
            p = self.procs.get(name)
            rc = p.returncode if p else None
            raise StackError(f"{name} exited (status {rc}):\n{self.log_tail(name)}")

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        """Signal one process and wait for it; SIGKILL if it outlives `timeout_s`."""
        p = self.procs.get(name)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def run_cli(
        self, *args: str, check: bool = True, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout_s)
        if check and out.returncode != 0:
            raise StackError(
                f"qos-scout {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}"
            )
        return out

    # ---------------------------------------------------------------- collector

    def collector_config(self) -> Path:
        """`collector.yml`: the scrape token file of /metrics, API docs on (a lab)."""
        self.metrics_token_file.write_text(self.metrics_token + "\n")
        self.metrics_token_file.chmod(0o600)
        path = self.workdir / "collector.yml"
        doc = {"metrics": {"token_file": str(self.metrics_token_file)}, "api_docs": True}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def start_collector(self, port: int | None = None, name: str = "collector") -> str:
        port = port or free_port()
        self.collector_url = f"http://127.0.0.1:{port}"
        config = self.collector_config()
        self.spawn(
            name,
            ["collector", "serve", "--config", str(config), "--db", self.db_url,
             "--listen", f"127.0.0.1:{port}"],
        )  # fmt: skip

        def up() -> bool:
            self._check_alive(name)
            return httpx.get(f"{self.collector_url}/healthz", timeout=2).status_code == 200

        wait_for("the collector to answer", up, 60.0)
        return self.collector_url

    def collector_metrics(self) -> str:
        """The operator's scrape of the collector's /metrics (with the scrape token)."""
        resp = httpx.get(
            f"{self.collector_url}/metrics",
            headers={"Authorization": f"Bearer {self.metrics_token}"},
            timeout=10,
        )
        if resp.status_code != 200:
            raise StackError(f"GET /metrics: {resp.status_code} {resp.text[:300]}")
        return resp.text

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """Call the collector's partner API with the partner key."""
        resp = httpx.request(
            method,
            f"{self.collector_url}{path}",
            headers={"Authorization": f"Bearer {self.partner_key}"},
            timeout=30,
            **kw,
        )
        if resp.status_code >= 400:
            raise StackError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    def create_tenancy(self, partner: str = "demo-partner", site: str = "demo-site") -> str:
        """A partner (admin CLI), a customer and a site (API); returns a one-time token."""
        out = self.run_cli("collector", "partner", "create", partner, "--db", self.db_url, "--json")
        data = json.loads(out.stdout)
        self.partner_key = str(data["api_key"])
        self.partner_id = str(data["partner_id"])
        user = ["collector", "user", "create", "--partner", self.partner_id, "--role", "admin",
                "--email", self.admin_email, "--password-stdin", "--db", self.db_url]  # fmt: skip
        made = subprocess.run(self.command(*user), capture_output=True, text=True, timeout=60,
                              input=self.admin_password + "\n")  # fmt: skip
        if made.returncode != 0:
            raise StackError(f"qos-scout collector user create failed: {made.stderr.strip()}")
        self.customer_id = self.api("POST", "/api/v1/customers", json={"name": "Demo Customer"})[
            "id"
        ]
        body = {"customer_id": self.customer_id, "name": site, "address": "127.0.0.1 (loopback)"}
        self.site_id = self.api("POST", "/api/v1/sites", json=body)["id"]
        return str(self.api("POST", f"/api/v1/sites/{self.site_id}/tokens", json={})["token"])

    # ---------------------------------------------------------------- responder

    def start_responder(
        self, args: list[str], ready: Callable[[], bool], name: str = "responder"
    ) -> None:
        self.spawn(name, ["responder", *args])

        def up() -> bool:
            self._check_alive(name)
            return ready()

        wait_for("the responder to listen", up, 30.0)

    # ---------------------------------------------------------------- agent

    def write_agent_config(
        self, modules: dict[str, Any], *, name: str = "agent", **sections: Any
    ) -> Path:
        """`<name>.yml` with `<name>.json` credentials and a `<name>` spool; sections given
        are merged over the defaults (a section set to None is removed)."""
        self.agent_metrics_port = free_port()
        spool = "spool.db" if name == "agent" else f"{name}-spool.db"
        cfg: dict[str, Any] = {
            "collector": {
                "url": self.collector_url,
                "credentials_file": f"{name}.json",
                "timeout_s": 5,
            },
            "spool": {"path": spool},
            # A demo ships every result at once (an agent in the field waits max_delay_s).
            "shipping": {
                "interval_s": 1,
                "max_delay_s": 0,
                "backoff_initial_s": 0.5,
                "backoff_max_s": 2,
            },
            "jobs": {"wait_s": 5},
            "metrics": {"port": self.agent_metrics_port},
            "scheduler": {"first_run_within_s": 1, "shutdown_flush_s": 5},
            "modules": modules,
        }
        for key, value in sections.items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = {**cfg.get(key, {}), **value}
        path = self.workdir / f"{name}.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def enroll(self, config: Path, token: str) -> None:
        self.run_cli(
            "agent",
            "enroll",
            "--collector",
            self.collector_url,
            "--token",
            token,
            "--config",
            str(config),
        )

    def start_agent(self, config: Path, name: str = "agent") -> subprocess.Popen[bytes]:
        return self.spawn(name, ["-v", "agent", "run", "--config", str(config)])

    def agent_metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.agent_metrics_port}/metrics", timeout=5).text

    def results(self, limit: int = 10_000) -> list[dict[str, Any]]:
        got = self.api("GET", "/api/v1/results", params={"site_id": self.site_id, "limit": limit})
        return list(got)

    def tickets(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"site_id": self.site_id, **({"state": state} if state else {})}
        got = self.api("GET", "/api/v1/tickets", params=params)
        return list(got["tickets"] if isinstance(got, dict) else got)
