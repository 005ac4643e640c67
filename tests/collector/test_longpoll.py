"""The job long poll costs nothing while it waits: no query when it starts (the sweep knows
the site has no job), one when woken, none in between and none at its deadline; woken by
a new job, by a lapsed lease (re-armed when the collector starts) and, on PostgreSQL, by a
job queued through another collector process (LISTEN/NOTIFY). The poll's last contact is
kept in memory, written in batches, and read fresh by the agent listing."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from collector import jobs, tenants
from tests.collector.conftest import new_tenant
from tests.collector.peers import start_collector, wait_for
from tests.collector.pg import free_port

PING = {"probe": "icmp", "targets": ["192.0.2.9"], "options": {"count": 5}}


def _count_job_queries(engine: sa.Engine) -> list[str]:
    """The statements on the jobs table but the sweep's (one per process every few s)."""
    seen: list[str] = []

    def on_exec(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if " jobs" in statement and "DISTINCT jobs.site_id" not in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", on_exec)
    return seen


class Poll:
    """One long poll in a thread, with when it was sent and how long it took."""

    def __init__(self, client: httpx.Client, wait: float) -> None:
        self.out: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(client, wait))
        self.thread.start()

    def _run(self, client: httpx.Client, wait: float) -> None:
        t0 = time.monotonic()
        r = client.get("/api/v1/agent/jobs", params={"wait": wait}, timeout=wait + 30)
        self.out.update(resp=r, took=time.monotonic() - t0, done=time.monotonic())

    def result(self, timeout: float) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the poll did not answer"
        assert self.out["resp"].status_code == 200, self.out["resp"].text
        return self.out


def _primed(srv: Any) -> None:
    waker = srv.state.waker
    wait_for(lambda: waker.primed is not None and waker.primed == waker.generation, 30,
             "the jobs sweep")  # fmt: skip


def test_an_idle_poll_makes_no_query_at_all(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    _primed(srv)
    queries = _count_job_queries(srv.store.engine)
    skipped = srv.state.waker.looks_skipped
    poll = Poll(t.agent, 1.5).result(10)
    assert poll["resp"].json() == {"jobs": []} and poll["took"] >= 1.4
    assert queries == []  # not when it started (no job for the site), nothing after
    assert srv.state.waker.looks_skipped == skipped + 1


def test_a_new_job_wakes_the_poll_with_one_look(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    _primed(srv)
    queries = _count_job_queries(srv.store.engine)
    poll = Poll(t.agent, 30)
    wait_for(lambda: srv.state.waker.waiting, 10, "the poll waiting")
    assert queries == []  # it waits on an event, not on the table
    job = t.partner.post(f"/api/v1/sites/{t.site_id}/jobs", json={"kind": "probe", "spec": PING})
    assert job.status_code == 201, job.text
    created = time.monotonic()
    out = poll.result(30)
    [handed] = out["resp"].json()["jobs"]
    assert handed["id"] == job.json()["id"]
    assert out["done"] - created < 5  # woken by the job, not by the 30 s wait
    looks = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    # the job's creation reads it back (1); woken: 1 look + the take's read
    assert len(looks) == 3, looks
    assert not srv.state.waker.waiting  # the poll left nothing behind


def test_a_job_that_reached_the_table_unannounced_is_found_by_the_sweep(make_store, serve):
    """A job written without a notification (another process on the SQLite file) still
    reaches the waiting poll: the sweep finds it within its interval and wakes the site."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    _primed(srv)
    poll = Poll(t.agent, 40)
    wait_for(lambda: srv.state.waker.waiting, 10, "the poll waiting")
    with srv.store.write() as c:  # straight into the table: no wake-up, no NOTIFY
        job = jobs.create_job(c, t.partner_id, t.site_id, "probe", PING, time.time())
    created = time.monotonic()
    out = poll.result(40)
    assert [j["id"] for j in out["resp"].json()["jobs"]] == [job["id"]]
    assert out["done"] - created < 20  # the sweep's 5 s (jittered), not the 40 s wait


def test_a_lapsed_lease_wakes_the_poll_after_a_restart(make_store, serve):
    """A job handed to an agent that never started it is offered again when its lease
    lapses: the collector arms one timer for it when it starts, and the timer wakes the
    site's poll (no poll loop looks at the table meanwhile)."""
    store = make_store()
    now = time.time()
    with store.write() as c:
        p, _ = tenants.create_partner(c, "acme", now)
        cust = tenants.create_customer(c, p["id"], "Contoso", "", now)
        site = tenants.create_site(c, p["id"], cust["id"], {"name": "HQ"}, now)
        token = tenants.create_token(c, p["id"], site["id"], 600, now)["token"]
        job = jobs.create_job(c, p["id"], site["id"], "probe", PING, now)
        lapse_in = 1.0
        dispatched = now - jobs.DISPATCH_LEASE_S + lapse_in
        handed = jobs.take_jobs(c, {"id": "gone-agent", "site_id": site["id"]}, dispatched)
        assert [j["id"] for j in handed] == [job["id"]]
    srv = serve(store)
    assert srv.state.waker.pending_leases() == 1
    enr = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": token, "hostname": "box"})
    agent = httpx.Client(
        base_url=srv.url, headers={"Authorization": f"Bearer {enr.json()['agent_key']}"}
    )
    out = Poll(agent, 30).result(30)
    assert [j["id"] for j in out["resp"].json()["jobs"]] == [job["id"]]
    assert out["took"] < 10  # the lease lapsed ~1 s in; the wait was 30 s


def test_last_contact_of_a_poll_is_batched_and_read_fresh(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    before = time.time()
    writes = []
    sa.event.listen(
        srv.store.engine,
        "before_cursor_execute",
        lambda _c, _cur, stmt, *_a: writes.append(stmt) if "UPDATE agents" in stmt else None,
    )
    for _ in range(5):
        assert t.agent.get("/api/v1/agent/jobs").status_code == 200
    [a] = t.partner.get("/api/v1/agents").json()
    seen = a["last_seen_at"]
    assert seen is not None and seen >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(before))
    assert len(writes) <= 1  # five polls, at most one flush happened meanwhile
    assert srv.state.flush_seen() in (0, 1)
    with srv.store.read() as c:
        [row] = c.execute(sa.text("SELECT last_seen_at FROM agents")).all()
    assert row[0] >= before


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_job_queued_through_one_process_wakes_the_poll_held_by_another(db_url, make_store):
    """Two `qos-scout collector serve` processes on one PostgreSQL: the agent's poll waits
    on the second (its first look at the table done), the job is queued through the first,
    and the NOTIFY sent with the insert wakes the poll in well under its wait."""
    store = make_store()
    now = time.time()
    with store.write() as c:
        partner, pkey = tenants.create_partner(c, "acme", now)
        cust = tenants.create_customer(c, partner["id"], "Contoso", "", now)
        site = tenants.create_site(c, partner["id"], cust["id"], {"name": "HQ"}, now)
        token = tenants.create_token(c, partner["id"], site["id"], 600, now)["token"]

    def looks() -> int:  # scans of the jobs table, as PostgreSQL counts them (~1 s late)
        with store.read() as c:
            q = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            return int(c.exec_driver_sql(q + " WHERE relname = 'jobs'").scalar_one())

    ports = [free_port(), free_port()]
    procs = [start_collector(p, "--db", db_url) for p in ports]
    try:
        one, two = (f"http://127.0.0.1:{p}" for p in ports)
        enr = httpx.post(f"{one}/api/v1/enroll", json={"token": token, "hostname": "box"})
        assert enr.status_code == 201, enr.text
        auth = {"Authorization": f"Bearer {enr.json()['agent_key']}"}
        agent = httpx.Client(base_url=two, headers=auth)
        # Each process looked when it started (for leases to re-arm) and sweeps the table
        # every 5 s; the poll is held once a sweep or two came after it was sent.
        wait_for(lambda: looks() >= 2, 20, "the two processes' start-up looks to be counted")
        poll = Poll(agent, 30)
        before = looks()
        wait_for(lambda: looks() >= before + 2, 30, "sweeps after the poll was sent")
        r = httpx.post(
            f"{one}/api/v1/sites/{site['id']}/jobs",
            headers={"Authorization": f"Bearer {pkey}"},
            json={"kind": "probe", "spec": PING},
        )
        assert r.status_code == 201, r.text
        created = time.monotonic()
        out = poll.result(40)
        assert [j["id"] for j in out["resp"].json()["jobs"]] == [r.json()["id"]]
        woke = out["done"] - created
        print(f"\njob queued on one process, poll on the other answered after {woke:.3f} s")
        assert woke < 5, f"answered {woke:.1f} s after the job (wait 30 s): not by event"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_listener_reconnects_when_its_connection_drops(make_store, serve):
    srv = serve(make_store())
    waker = srv.state.waker
    wait_for(lambda: waker.listening, 20, "the listening connection")
    t = new_tenant(srv, "acme")
    with srv.store.read() as c:
        killed = c.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN qs_jobs'"
        ).all()
    assert killed == [(True,)]
    wait_for(lambda: waker.connects == 2 and waker.listening, 30, "the listener to reconnect")
    poll = Poll(t.agent, 30)
    wait_for(lambda: waker.waiting, 10, "the poll waiting")
    with srv.store.write() as c:  # straight into the database: only its NOTIFY can wake
        job = jobs.create_job(c, t.partner_id, t.site_id, "probe", PING, time.time())
    created = time.monotonic()
    out = poll.result(30)
    assert [j["id"] for j in out["resp"].json()["jobs"]] == [job["id"]]
    assert out["done"] - created < 5


def test_a_stopping_collector_answers_the_waiting_polls(make_store):
    """SIGTERM to `collector serve` answers every held poll at once (the agent polls again,
    at another replica or this one restarted) instead of cutting it, with a traceback in
    the log, when the graceful shutdown runs out."""
    store = make_store()
    now = time.time()
    with store.write() as c:
        partner, _ = tenants.create_partner(c, "acme", now)
        cust = tenants.create_customer(c, partner["id"], "Contoso", "", now)
        site = tenants.create_site(c, partner["id"], cust["id"], {"name": "HQ"}, now)
        token = tenants.create_token(c, partner["id"], site["id"], 600, now)["token"]
    url = store.engine.url.render_as_string(hide_password=False)
    port = free_port()
    proc = start_collector(port, "--db", url)
    try:
        base = f"http://127.0.0.1:{port}"
        enr = httpx.post(f"{base}/api/v1/enroll", json={"token": token, "hostname": "box"})
        auth = {"Authorization": f"Bearer {enr.json()['agent_key']}"}
        polls = [Poll(httpx.Client(base_url=base, headers=auth), 50) for _ in range(3)]
        first = Poll(httpx.Client(base_url=base, headers=auth), 0).result(20)
        assert first["resp"].json() == {"jobs": []}  # served: the three before it are held
        stopped = time.monotonic()
        proc.terminate()
        for p in polls:
            out = p.result(20)
            assert out["resp"].json() == {"jobs": []}
            assert out["done"] - stopped < 4  # not the 50 s wait, nor the 5 s grace
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
        assert "Traceback" not in log and "CancelledError" not in log, log[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_spool_depth_an_agent_reports_on_its_poll_is_shown_with_it(make_store, serve):
    """An agent says on each job poll how many results it holds unshipped; the agent list
    shows it (at once in this process, in the database after the batched write)."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    assert t.agent.get("/api/v1/agent/jobs", params={"spool": 7}).status_code == 200
    [a] = t.partner.get("/api/v1/agents").json()
    assert a["spool_depth"] == 7
    srv.state.flush_seen()
    with srv.store.read() as c:
        assert c.execute(sa.text("SELECT spool_depth FROM agents")).scalar_one() == 7
    assert t.agent.get("/api/v1/agent/jobs").status_code == 200  # not said: kept
    assert t.partner.get(f"/api/v1/agents/{t.agent_id}").json()["spool_depth"] == 7
    bad = t.agent.get("/api/v1/agent/jobs", params={"spool": -1})
    assert bad.status_code == 422 and "spool" in bad.text
