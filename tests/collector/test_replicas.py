"""Three `qos-scout collector serve` processes behind HAProxy on one PostgreSQL, driven by
real agent processes and a load generator, one replica killed with SIGKILL under load:
no result lost, none stored twice, one open ticket for a rule tripped through several
replicas, each notification delivered once, each job handed out once."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from agent.cli.stack import Stack, wait_for
from collector import tenants
from collector.schema import jobs, outbox, results, ticket_events, tickets
from tests.collector.conftest import SCRAPE_TOKEN, icmp
from tests.collector.peers import WebhookReceiver
from tests.collector.pg import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REPLICAS = 3
LOAD_THREADS = 4
BATCH = 10
TRIP_THREADS = 6
JOBS = 8
AGENT_MODULES = {
    "ping": {
        "probe": "icmp",
        "targets": ["127.0.0.1"],
        "interval_s": 1,
        "options": {"count": 2, "interval_s": 0.05, "timeout_s": 0.5},
    },
    "host": {"probe": "host", "targets": ["local"], "interval_s": 1, "options": {"sample_s": 0.1}},
}

HAPROXY_CFG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 90s
    timeout server 90s
    retries 2
    option redispatch 1
frontend collectors_in
    bind 127.0.0.1:{port}
    default_backend collectors
backend collectors
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server check inter 250ms fall 2 rise 2
{servers}
"""


@dataclass
class Loader:
    """Threads posting result batches through HAProxy; a batch is re-sent (same ids) until
    the collector answers it, as an agent's spool does. Keeps what it produced and every
    failed attempt."""

    url: str
    site_id: str
    agent_id: str
    key: str
    sent: set[str] = field(default_factory=set)
    stored: int = 0
    duplicates: int = 0
    batches: int = 0
    failures: list[float] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, client: httpx.Client, items: list[dict[str, Any]]) -> str:
        """Send one batch until it is answered; returns the server that answered it."""
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "a batch was not answered within 30 s"
            try:
                r = client.post("/api/v1/results", json={"results": items})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            with self.lock:
                self.failures.append(time.monotonic())
            time.sleep(0.05)  # a retry pause, as the agent's backoff: not synchronisation
        body = r.json()
        statuses = {i["status"] for i in body["items"]}
        assert statuses <= {"stored", "duplicate"}, body
        server = r.headers.get("x-served-by", "?")
        with self.lock:
            self.sent.update(i["id"] for i in items)
            self.stored += body["stored"]
            self.duplicates += body["duplicates"]
            self.batches += 1
            self.served_by[server] += 1
        return server

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def run(self) -> None:
        with self.client() as c:
            while not self.stop.is_set():
                self.post(c, [icmp(10, target="192.0.2.10") for _ in range(BATCH)])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _haproxy(stack: Stack, ports: list[int]) -> str:
    port = free_port()
    servers = "\n".join(f"    server c{i + 1} 127.0.0.1:{p}" for i, p in enumerate(ports))
    cfg = stack.workdir / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(stack.workdir / "haproxy.log", "ab")
    stack.procs["haproxy"] = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    url = f"http://127.0.0.1:{port}"

    def all_up() -> bool:  # each replica answered through HAProxy
        seen = {httpx.get(f"{url}/readyz", timeout=2).headers.get("x-served-by")
                for _ in range(2 * len(ports))}  # fmt: skip
        return len(seen) == len(ports)

    wait_for("HAProxy to reach every replica", all_up, 30)
    return url


def _start_replicas(stack: Stack, db_url: str, hook_url: str) -> list[int]:
    stack.metrics_token_file.write_text(SCRAPE_TOKEN + "\n")
    stack.metrics_token_file.chmod(0o600)
    cfg = stack.workdir / "collector.yml"
    doc = {
        "metrics": {"token_file": str(stack.metrics_token_file)},
        "notifications": [{"type": "webhook", "name": "noc", "url": hook_url, "scope": "operator"}],
        "outbox": {"poll_interval_s": 0.2, "lease_s": 30},
        "rules": {"rtt": {"trip_after": 3}},
    }
    cfg.write_text(yaml.safe_dump(doc))
    ports = [free_port() for _ in range(REPLICAS)]
    for i, port in enumerate(ports):
        stack.spawn(f"c{i + 1}", ["collector", "serve", "--config", str(cfg), "--db", db_url,
                                  "--listen", f"127.0.0.1:{port}"])  # fmt: skip
    for i, port in enumerate(ports):

        def up(name: str = f"c{i + 1}", p: int = port) -> bool:
            if not stack.alive(name):
                raise AssertionError(f"{name} exited:\n{stack.log_tail(name)}")
            return httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200

        wait_for(f"replica c{i + 1}", up, 60)
    return ports


def _spool_left(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM results WHERE rejected IS NULL").fetchone()[0])
    finally:
        db.close()


def _produced(stack: Stack, name: str) -> int:
    m = re.findall(r"agent stopped: (\d+) results produced", stack.log_tail(name, 50))
    assert m, f"no shutdown line in {name}.log:\n{stack.log_tail(name)}"
    return int(m[-1])


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_three_replicas_behind_haproxy_survive_a_sigkill_under_load(db_url, make_store, stack):
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy not found (Debian package haproxy): the replica test needs it")
    store = make_store()
    now = time.time()
    with store.write() as c:
        partner, pkey = tenants.create_partner(c, "acme", now)
        cust = tenants.create_customer(c, partner["id"], "Contoso", "", now)
        site = tenants.create_site(c, partner["id"], cust["id"], {"name": "HQ"}, now)
        load_site = tenants.create_site(c, partner["id"], cust["id"], {"name": "Load"}, now)
        tokens = [tenants.create_token(c, partner["id"], site["id"], 600, now)["token"]
                  for _ in range(2)]  # fmt: skip
        ltoken = tenants.create_token(c, partner["id"], load_site["id"], 600, now)["token"]
        loader_agent = tenants.enroll(c, ltoken, "loader", "0.1.0", now)
    hook = WebhookReceiver()
    try:
        ports = _start_replicas(stack, db_url, hook.url)
        lb = _haproxy(stack, ports)
        stack.collector_url = lb
        api = httpx.Client(base_url=lb, headers={"Authorization": f"Bearer {pkey}"}, timeout=30)

        # Two real agents of one site, shipping and long-polling through HAProxy.
        names, metrics_ports = ["agent1", "agent2"], []
        for name, token in zip(names, tokens, strict=True):
            config = stack.write_agent_config(AGENT_MODULES, name=name, jobs={"wait_s": 5})
            metrics_ports.append(stack.agent_metrics_port)
            stack.enroll(config, token)
            stack.start_agent(config, name=name)
        loader = Loader(lb, load_site["id"], loader_agent["agent_id"], loader_agent["agent_key"])

        # 1. A rule tripped at once through several replicas: one open ticket, one event.
        def trip() -> None:
            with loader.client() as c:
                for _ in range(3):
                    loader.post(c, [icmp(300, target="198.51.100.7")])

        threads = [threading.Thread(target=trip) for _ in range(TRIP_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(loader.served_by) >= 2, loader.served_by  # the trips met several replicas
        wait_for("the ticket's notification", lambda: len(hook.requests) >= 1, 20)

        # 2. Jobs queued for the site of the two agents: each handed out once.
        job_ids = []
        for _ in range(JOBS):
            spec = {"probe": "icmp", "targets": ["127.0.0.1"], "options": {"count": 1}}
            r = api.post(f"/api/v1/sites/{site['id']}/jobs", json={"kind": "probe", "spec": spec})
            assert r.status_code == 201, r.text
            job_ids.append(r.json()["id"])

        def jobs_done() -> bool:
            return all(api.get(f"/api/v1/jobs/{j}").json()["state"] == "done" for j in job_ids)

        wait_for("the jobs to be done", jobs_done, 30)

        # 3. Load through HAProxy; replica c2 killed with SIGKILL in the middle of it.
        workers = [threading.Thread(target=loader.run) for _ in range(LOAD_THREADS)]
        for t in workers:
            t.start()
        wait_for("load on every replica", lambda: loader.batches >= 60, 30, every_s=0.05)
        batches_at_kill = loader.batches
        killed_at = time.monotonic()
        assert stack.stop("c2", sig=signal.SIGKILL) == -signal.SIGKILL
        wait_for("load to go on past the kill",
                 lambda: loader.batches >= batches_at_kill + 150, 40, every_s=0.05)  # fmt: skip
        loader.stop.set()
        for t in workers:
            t.join(60)
        assert not any(t.is_alive() for t in workers)
        after_kill = [f - killed_at for f in loader.failures if f >= killed_at]

        # 4. A rule tripped after the kill is notified once by the replicas left.
        with loader.client() as c:
            for _ in range(3):
                loader.post(c, [icmp(300, target="198.51.100.8")])
        wait_for("the second notification", lambda: len(hook.requests) >= 2, 20)

        # 5. The agents drain their spools through what is left, then stop.
        agent_failures = []
        for name, mport in zip(names, metrics_ports, strict=True):
            spool = stack.workdir / f"{name}-spool.db"
            wait_for(f"{name}'s spool to drain", lambda s=spool: _spool_left(s) == 0, 30)
            text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
            agent_failures.append(_metric(text, "qos_scout_agent_ship_failures"))
        for name in names:
            assert stack.stop(name) == 0, stack.log_tail(name)
            assert _spool_left(stack.workdir / f"{name}-spool.db") == 0  # none left unsent
        # The outbox is empty before the receiver's deliveries are counted.
        eng = sa.create_engine(db_url)

        def outbox_empty() -> bool:
            with eng.connect() as c:
                q = sa.select(sa.func.count()).where(outbox.c.state != "sent")
                return c.execute(q).scalar() == 0

        wait_for("the outbox to be delivered", outbox_empty, 30)
        counts = _count(eng, stack, names, loader, job_ids)
    finally:
        hook.close()
    eng.dispose()
    recover = max(after_kill, default=0.0)
    print(
        f"\nreplicas: {loader.batches} batches ({len(loader.sent)} results) from the loader, "
        f"{counts['agent_results']} from 2 agents; lost {counts['lost']}, "
        f"duplicated {counts['duplicated']}; requests retried after the kill: loader "
        f"{len(after_kill)}, agents {int(sum(agent_failures))}; duplicates answered "
        f"{loader.duplicates}; recovered {recover:.2f} s after the kill; "
        f"served by {dict(loader.served_by)}"
    )
    assert counts["lost"] == 0 and counts["duplicated"] == 0
    assert loader.stored == len(loader.sent)  # each result stored by exactly one request
    assert counts["open_tickets"] == {"198.51.100.7": 1, "198.51.100.8": 1}
    assert counts["opened_events"] == 2
    deliveries = Counter(h["x-qos-scout-delivery"] for h, _ in hook.requests)
    assert set(deliveries) == counts["outbox_ids"]  # every event delivered ...
    assert set(deliveries.values()) == {1}  # ... once
    assert counts["job_results"] == dict.fromkeys(job_ids, 1)


def _count(
    eng: sa.Engine, stack: Stack, names: list[str], loader: Loader, job_ids: list[str]
) -> dict[str, Any]:
    """What the database holds against what the agents and the loader produced."""
    out: dict[str, Any] = {"lost": 0, "duplicated": 0, "agent_results": 0}
    with eng.connect() as c:
        for name in names:
            agent_id = json.loads((stack.workdir / f"{name}.json").read_text())["agent_id"]
            q = sa.select(results.c.id).where(results.c.agent_id == agent_id)
            ids = [r for (r,) in c.execute(q)]
            produced = _produced(stack, name)
            out["agent_results"] += produced
            out["lost"] += max(0, produced - len(set(ids)))
            out["duplicated"] += len(ids) - len(set(ids)) + max(0, len(set(ids)) - produced)
        q = sa.select(results.c.id).where(results.c.agent_id == loader.agent_id)
        ids = [r for (r,) in c.execute(q)]
        out["lost"] += len(loader.sent - set(ids))
        out["duplicated"] += len(ids) - len(set(ids)) + len(set(ids) - loader.sent)
        mine = tickets.c.site_id == loader.site_id  # the agents' host probe may trip too
        q = sa.select(tickets.c.target, sa.func.count()).where(mine, tickets.c.state == "open")
        out["open_tickets"] = dict(c.execute(q.group_by(tickets.c.target)).all())
        q = (
            sa.select(sa.func.count())
            .select_from(ticket_events.join(tickets, tickets.c.id == ticket_events.c.ticket_id))
            .where(mine, ticket_events.c.kind == "opened")
        )
        out["opened_events"] = c.execute(q).scalar()
        out["outbox_ids"] = {str(i) for (i,) in c.execute(sa.select(outbox.c.id))}
        q = (
            sa.select(results.c.job_id, sa.func.count())
            .where(results.c.job_id.in_(job_ids))
            .group_by(results.c.job_id)
        )
        out["job_results"] = dict(c.execute(q).all())
        states = {s for (s,) in c.execute(sa.select(jobs.c.state).where(jobs.c.id.in_(job_ids)))}
        assert states == {"done"}, states
    return out
