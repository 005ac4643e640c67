"""Three `qos-scout collector serve` processes behind HAProxy on one PostgreSQL, driven by
real agent processes and a load generator, one replica killed with SIGKILL under load:
no result lost, none stored twice, one open ticket for a rule tripped through several
replicas, each notification delivered once, each job handed out once.

One agent is pinned to the replica that is killed (HAProxy `use-server` on its key), and
that replica is frozen (SIGSTOP) until the agent's shipment is held by it, so the kill
always cuts an agent's request in flight, as well as the loader's."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from agent.cli.stack import Stack, wait_for
from collector import tenants
from collector.schema import jobs, outbox, results, ticket_events, tickets
from tests.collector.conftest import SCRAPE_TOKEN
from tests.collector.peers import WebhookReceiver
from tests.collector.pg import free_port
from tests.collector.replicas import (
    HAPROXY,
    SHIPPED_CHECK,
    SHIPPED_CHECK_TIMEOUT,
    Loader,
    spool_left,
    start_haproxy,
    start_replicas,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

REPLICAS = 3
LOAD_THREADS = 4
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


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def _collector_config(stack: Stack, hook_url: str) -> dict[str, Any]:
    stack.metrics_token_file.write_text(SCRAPE_TOKEN + "\n")
    stack.metrics_token_file.chmod(0o600)
    return {
        "metrics": {"token_file": str(stack.metrics_token_file)},
        "notifications": [{"type": "webhook", "name": "noc", "url": hook_url, "scope": "operator"}],
        "outbox": {"poll_interval_s": 0.2, "lease_s": 30},
        "rules": {"rtt": {"trip_after": 3}},
    }


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
        ports = start_replicas(stack, REPLICAS, db_url, _collector_config(stack, hook.url))
        lb_port = free_port()
        lb = f"http://127.0.0.1:{lb_port}"
        # Two real agents of one site, shipping and long-polling through HAProxy (enrolled
        # at c1 directly: HAProxy's config names agent1's key, to pin it to c2).
        names, configs, metrics_ports = ["agent1", "agent2"], [], []
        for name, token in zip(names, tokens, strict=True):
            stack.collector_url = lb
            configs.append(stack.write_agent_config(AGENT_MODULES, name=name, jobs={"wait_s": 5}))
            metrics_ports.append(stack.agent_metrics_port)
            stack.collector_url = f"http://127.0.0.1:{ports[0]}"
            stack.enroll(configs[-1], token)
        key1 = json.loads((stack.workdir / "agent1.json").read_text())["agent_key"]
        # The shipped health check (every 2 s): a frozen replica stays in for seconds.
        start_haproxy(stack, ports, check=SHIPPED_CHECK, port=lb_port, pins={key1: "c2"},
                      check_timeout=SHIPPED_CHECK_TIMEOUT)  # fmt: skip
        stack.collector_url = lb
        for name, config in zip(names, configs, strict=True):
            stack.start_agent(config, name=name)
        api = httpx.Client(base_url=lb, headers={"Authorization": f"Bearer {pkey}"}, timeout=30)
        loader = Loader(lb, load_site["id"], loader_agent["agent_id"], loader_agent["agent_key"])

        # 1. A rule tripped at once through several replicas: one open ticket, one event.
        def trip() -> None:
            with loader.client() as c:
                for _ in range(3):
                    loader.post(c, loader.items(1, rtt_avg=300, target="198.51.100.7"))

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

        # 3. Load through HAProxy; replica c2 frozen until it holds agent1's shipment (its
        #    spool fills), then killed with SIGKILL.
        workers = [threading.Thread(target=loader.run) for _ in range(LOAD_THREADS)]
        for t in workers:
            t.start()
        wait_for("load on every replica", lambda: loader.batches >= 60, 30, every_s=0.05)
        spool1 = stack.workdir / "agent1-spool.db"
        stack.procs["c2"].send_signal(signal.SIGSTOP)
        wait_for("agent1's shipment held by the frozen replica",
                 lambda: spool_left(spool1) >= 3, 20, every_s=0.05)  # fmt: skip
        batches_at_kill = loader.batches
        killed_at = time.monotonic()
        assert stack.stop("c2", sig=signal.SIGKILL) == -signal.SIGKILL
        wait_for("agent1's spool to drain through the others",
                 lambda: spool_left(spool1) == 0, 30, every_s=0.05)  # fmt: skip
        agent_recovered = time.monotonic() - killed_at
        wait_for("load to go on past the kill",
                 lambda: loader.batches >= batches_at_kill + 150, 40, every_s=0.05)  # fmt: skip
        loader.stop.set()
        for t in workers:
            t.join(60)
        assert not any(t.is_alive() for t in workers)
        retried, recover = loader.after(killed_at)

        # 4. A rule tripped after the kill is notified once by the replicas left.
        with loader.client() as c:
            for _ in range(3):
                loader.post(c, loader.items(1, rtt_avg=300, target="198.51.100.8"))
        wait_for("the second notification", lambda: len(hook.requests) >= 2, 20)

        # 5. The agents drain their spools through what is left, then stop.
        agent_failures = []
        for name, mport in zip(names, metrics_ports, strict=True):
            spool = stack.workdir / f"{name}-spool.db"
            wait_for(f"{name}'s spool to drain", lambda s=spool: spool_left(s) == 0, 30)
            text = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
            agent_failures.append(_metric(text, "qos_scout_agent_ship_failures_total"))
        for name in names:
            assert stack.stop(name) == 0, stack.log_tail(name)
            assert spool_left(stack.workdir / f"{name}-spool.db") == 0  # none left unsent
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
    print(
        f"\nreplicas: {loader.batches} batches ({len(loader.sent)} results) from the loader, "
        f"{counts['agent_results']} from 2 agents; lost {counts['lost']}, "
        f"duplicated {counts['duplicated']}; requests retried after the kill: loader "
        f"{retried}, agents {int(sum(agent_failures))}; duplicates answered "
        f"{loader.duplicates}; recovered {recover:.2f} s after the kill (agent1's spool "
        f"empty after {agent_recovered:.2f} s); "
        f"served by {dict(loader.served_by)}"
    )
    assert counts["lost"] == 0 and counts["duplicated"] == 0
    assert agent_failures[0] >= 1  # agent1's shipment cut by the kill was sent again
    # Each result answered once, "stored" or (its first answer lost in the kill) "duplicate".
    assert loader.stored + loader.duplicates == len(loader.sent)
    assert loader.duplicates <= sum(n for _, _, n in loader.retried) * loader.batch
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
