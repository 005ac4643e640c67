"""Collectors sharing one PostgreSQL, raced with real threads (one engine per collector):
one open ticket per key whoever trips it, each outbox row and each job taken by one of
them, hysteresis streaks counted once per result whichever collector evaluates it, and
rules changed through one collector applied by the others at once."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from collector import jobs, outbox, tenants, tickets
from collector.api.state import EPOCH_CHECK_S, AppState
from collector.config import CollectorConfig
from collector.context import load_site_context
from collector.db import head_revision
from collector.evaluation import RuleBook
from collector.ingest import ingest
from collector.locks import lock_site
from collector.schema import agents, rule_state, ticket_events
from collector.schema import outbox as outbox_table
from collector.schema import tickets as tickets_table
from collector.store import Store
from collector.worker import deliver_due
from tests.collector.conftest import icmp, new_tenant

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

WEBHOOK = {"type": "webhook", "name": "noc", "url": "http://127.0.0.1:9/hook", "scope": "operator"}


def _site(store: Store, n_agents: int = 1) -> list[dict[str, Any]]:
    """A partner, customer and site with enrolled agents; the agent rows as ingest takes them."""
    now = time.time()
    out = []
    with store.write() as c:
        partner, _key = tenants.create_partner(c, "acme", now)
        cust = tenants.create_customer(c, partner["id"], "Contoso", "", now)
        site = tenants.create_site(c, partner["id"], cust["id"], {"name": "HQ"}, now)
        for i in range(n_agents):
            token = tenants.create_token(c, partner["id"], site["id"], 600, now)["token"]
            enrolled = tenants.enroll(c, token, f"box{i}", "0.1.0", now)
            row = c.execute(sa.select(agents).where(agents.c.id == enrolled["agent_id"])).one()
            out.append(dict(row._mapping))
    return out


def _run_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` in n threads started together; their results, or the first error raised."""
    out: list[Any] = [None] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            out[i] = work(i)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return out


def _wait_for_lock_waiter(store: Store, timeout_s: float = 20.0) -> None:
    """Until some other backend of this database waits on a lock (a row or index entry)."""
    deadline = time.monotonic() + timeout_s
    q = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        with store.read() as c:
            if c.execute(q).scalar():
                return
        time.sleep(0.01)
    raise AssertionError("no transaction came to wait on the first one's lock")


def _open_tickets(store: Store) -> list[Any]:
    with store.read() as c:
        return c.execute(
            sa.select(tickets_table).where(tickets_table.c.state.in_(tickets.OPEN_STATES))
        ).all()


def _events(store: Store, ticket_id: str) -> list[str]:
    with store.read() as c:
        q = sa.select(ticket_events.c.kind).where(ticket_events.c.ticket_id == ticket_id)
        return [k for (k,) in c.execute(q.order_by(ticket_events.c.id))]


def test_a_trip_refused_by_the_open_ticket_index_becomes_an_event_on_that_ticket(make_store):
    """Replica one opened the ticket but has not committed; replica two checks (sees none),
    writes, waits on the unique index, is refused once one commits and adds its trip to
    one's ticket: one open ticket; two's trip, worse, escalates it."""
    one = make_store(notifications=[WEBHOOK])
    two = Store(one.config)
    try:
        [agent] = _site(one)
        book = RuleBook(one.config)
        rule = book.base["rtt"]
        with one.read() as c:
            ctx = load_site_context(c, agent["site_id"])
        opened = threading.Event()
        got: dict[str, str] = {}

        def second() -> None:
            opened.wait(20)
            with two.write() as c:
                got["two"] = tickets.trip(c, two.config, ctx, rule, "t", "critical", [], 2.0)

        t = threading.Thread(target=second)
        t.start()
        with one.write() as c:
            got["one"] = tickets.trip(c, one.config, ctx, rule, "t", "warning", [], 1.0)
            opened.set()
            _wait_for_lock_waiter(one)
        t.join(30)
        assert got["one"] == got["two"]
        [tk] = _open_tickets(one)
        assert tk.id == got["one"] and tk.severity == "critical"
        assert _events(one, tk.id) == ["opened", "escalated"]
        with one.read() as c:
            events = [r.payload["event"] for r in c.execute(sa.select(outbox_table))]
        assert events == ["opened", "escalated"]
    finally:
        two.dispose()


def test_many_collectors_tripping_at_once_leave_one_open_ticket(make_store):
    stores = [make_store(notifications=[WEBHOOK])]
    stores += [Store(stores[0].config) for _ in range(5)]
    try:
        [agent] = _site(stores[0])
        book = RuleBook(stores[0].config)
        with stores[0].read() as c:
            ctx = load_site_context(c, agent["site_id"])

        def trip(i: int) -> str:
            with stores[i].write() as c:
                return tickets.trip(c, stores[i].config, ctx, book.base["rtt"], "t", "warning",
                                    [], 1.0)  # fmt: skip

        ids = _run_threads(len(stores), trip)
        [tk] = _open_tickets(stores[0])
        assert set(ids) == {tk.id}
        assert _events(stores[0], tk.id)[0] == "opened"
        assert set(_events(stores[0], tk.id)[1:]) <= {"tripped"}
        with stores[0].read() as c:
            assert outbox.pending_count(c) == 1
    finally:
        for s in stores[1:]:
            s.dispose()


def test_manual_tickets_opened_at_once_are_one(make_store):
    stores = [make_store()]
    stores += [Store(stores[0].config) for _ in range(3)]
    try:
        [agent] = _site(stores[0])
        with stores[0].read() as c:
            ctx = load_site_context(c, agent["site_id"])

        def open_one(i: int) -> str:
            with stores[i].write() as c:
                return tickets.open_manual_ticket(
                    c, stores[i].config, ctx, rule_id="readiness", target="site",
                    severity="warning", title="not ready", evidence={}, message="failed",
                    actor="test", now=1.0,
                )  # fmt: skip

        ids = _run_threads(len(stores), open_one)
        [tk] = _open_tickets(stores[0])
        assert set(ids) == {tk.id}
    finally:
        for s in stores[1:]:
            s.dispose()


def _enqueue(store: Store, n: int, now: float) -> list[int]:
    with store.write() as c:
        for i in range(n):
            outbox.enqueue(c, store.config, "p", "acme", {"event": "opened", "n": i}, now)
        return [r for (r,) in c.execute(sa.select(outbox_table.c.id))]


def test_outbox_rows_are_claimed_once_by_collectors_polling_at_once(make_store):
    stores = [make_store(notifications=[WEBHOOK])]
    stores += [Store(stores[0].config) for _ in range(3)]
    try:
        ids = _enqueue(stores[0], 400, now=100.0)

        def drain(i: int) -> list[int]:
            mine: list[int] = []
            while True:
                with stores[i].write() as c:
                    rows = outbox.claim_due(c, stores[i].config.outbox, 101.0, limit=7)
                if not rows:
                    return mine
                mine += [r.id for r in rows]

        claimed = _run_threads(len(stores), drain)
        every = [x for part in claimed for x in part]
        assert sorted(every) == sorted(ids)  # each row once: none twice, none missed
        assert sum(1 for part in claimed if part) >= 2  # they really claimed side by side
    finally:
        for s in stores[1:]:
            s.dispose()


def test_a_lease_that_runs_out_is_taken_again_and_a_handed_back_row_at_once(make_store):
    """A collector that dies holding rows: nobody takes them within the lease, another
    collector takes them after (at least once). Rows handed back are due at once."""
    one = make_store(notifications=[WEBHOOK], outbox={"lease_s": 30.0})
    two = Store(one.config)
    try:
        ids = _enqueue(one, 3, now=100.0)
        with one.write() as c:
            held = [r.id for r in outbox.claim_due(c, one.config.outbox, 100.0)]
        assert held == ids
        with two.write() as c:  # "one" is gone; its lease still runs
            assert outbox.claim_due(c, two.config.outbox, 129.9) == []
        with two.write() as c:
            again = outbox.claim_due(c, two.config.outbox, 130.1)
        assert [r.id for r in again] == ids and all(r.attempts == 0 for r in again)
        with two.write() as c:
            assert outbox.release(c, ids[1:], 130.1 + 30.0, now=131.0) == 2
            outbox.mark_sent(c, ids[0], 1, 131.0)
        with one.write() as c:  # "one" again: the handed-back rows, not the sent one
            assert [r.id for r in outbox.claim_due(c, one.config.outbox, 131.0)] == ids[1:]
        with one.write() as c:  # a lease that is no longer this loop's is not handed back
            assert outbox.release(c, ids[1:], 130.1 + 30.0, now=132.0) == 0
    finally:
        two.dispose()


def test_jobs_are_handed_out_once_to_polls_on_different_collectors(make_store):
    stores = [make_store()]
    stores += [Store(stores[0].config) for _ in range(3)]
    try:
        [agent] = _site(stores[0])
        with stores[0].write() as c:
            made = [
                jobs.create_job(c, agent["partner_id"], agent["site_id"], "probe",
                                {"probe": "icmp", "targets": ["127.0.0.1"]}, 100.0)["id"]
                for _ in range(60)
            ]  # fmt: skip

        def poll(i: int) -> list[str]:
            mine: list[str] = []
            while True:
                with stores[i].write() as c:
                    got = jobs.take_jobs(c, agent, 101.0)
                if not got:
                    return mine
                mine += [j["id"] for j in got]

        taken = _run_threads(len(stores), poll)
        every = [x for part in taken for x in part]
        assert sorted(every) == sorted(made)
    finally:
        for s in stores[1:]:
            s.dispose()


def test_hysteresis_counts_each_result_once_whichever_collector_evaluates_it(make_store):
    """Four agents of one site measure the same target; four collectors ingest their bad
    results at once: the streak counts every result (none lost to a concurrent
    read-modify-write of the site's rule state), and the rule trips once."""
    trip_after = 40
    rules = {"rtt": {"trip_after": trip_after, "clear_after": 2}}
    stores = [make_store(rules=rules)]
    stores += [Store(stores[0].config) for _ in range(3)]
    books = [RuleBook(s.config) for s in stores]
    try:
        site_agents = _site(stores[0], n_agents=len(stores))
        per_store = trip_after // len(stores)

        def post(i: int) -> int:
            stored = 0
            for _ in range(per_store):
                batch = [icmp(300, target="t")]
                out = ingest(stores[i], books[i], site_agents[i], batch, time.time())
                stored += out.stored
            return stored

        assert sum(_run_threads(len(stores), post)) == trip_after
        with stores[0].read() as c:
            st = c.execute(sa.select(rule_state).where(rule_state.c.rule_id == "rtt")).one()
        assert (st.bad_count, st.active) == (trip_after, True)
        [tk] = _open_tickets(stores[0])
        assert _events(stores[0], tk.id) == ["opened"]
    finally:
        for s in stores[1:]:
            s.dispose()


def test_rules_changed_through_one_replica_are_applied_by_another_at_once(make_store, serve):
    """Replica two has the site's rules cached; a partner lowers a threshold through replica
    one; replica two evaluates the next results with the new rule (within the epoch read
    bound, where its cache alone would keep the old rule for minutes)."""
    one, two = serve(make_store()), serve(make_store())
    t = new_tenant(one, "acme")
    on_two = httpx.Client(base_url=two.url, headers=dict(t.agent.headers), timeout=30)
    assert on_two.post("/api/v1/results", json={"results": [icmp(50)]}).status_code == 200
    r = t.partner.put(
        "/api/v1/rules/overrides",
        json={"site_id": t.site_id, "overrides": {"rtt": {"warning": 20, "trip_after": 1}}},
    )
    assert r.status_code == 200, r.text
    changed = time.monotonic()
    deadline = changed + 10 * EPOCH_CHECK_S
    while True:
        assert on_two.post("/api/v1/results", json={"results": [icmp(50)]}).status_code == 200
        if t.partner.get("/api/v1/tickets", params={"state": "open"}).json():
            break
        assert time.monotonic() < deadline, "replica two still evaluates with the old rule"
        time.sleep(0.05)  # the next result's interval, not synchronisation
    print(f"\nrules changed on one replica, applied by the other after "
          f"{time.monotonic() - changed:.2f} s")  # fmt: skip


def test_replicas_starting_at_once_on_an_empty_database_migrate_it_once(db_url, pg_cluster):
    """Every `collector serve` migrates at start: four at once on a new database all start,
    on the schema of this release."""
    name = "fresh_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(pg_cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    stores = [Store(CollectorConfig(db=pg_cluster.url(name))) for _ in range(4)]
    try:
        revisions = _run_threads(len(stores), lambda i: stores[i].migrate())
        assert revisions == [head_revision()] * len(stores)
    finally:
        for s in stores:
            s.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_a_delivery_loop_hands_back_what_it_could_not_send_within_its_lease(make_store):
    """Rows claimed at 101 s under a 30 s lease; at 115 s an attempt (timeout 20 s) might
    outlast the lease, and another replica would then send the row again: the loop does not
    start it and hands the rows back, due at once."""
    slow = {**WEBHOOK, "timeout_s": 20.0}
    store = make_store(notifications=[slow], outbox={"lease_s": 30.0})
    ids = _enqueue(store, 3, now=100.0)
    clock = itertools.chain([101.0], itertools.repeat(115.0))  # claimed, then 14 s later
    st = AppState(store=store, book=RuleBook(store.config), clock=lambda: next(clock))
    assert deliver_due(st) == 0
    with store.read() as c:
        rows = c.execute(sa.select(outbox_table).order_by(outbox_table.c.id)).all()
    assert [(r.id, r.state, r.attempts, r.next_attempt_at) for r in rows] == [
        (i, "pending", 0, 115.0) for i in ids
    ]


def test_a_ticket_resolved_by_hand_resets_the_rule_even_while_another_replica_evaluates(
    make_store,
):
    """Replica one is evaluating the site (it holds the site's lock and will write the rule
    state back); a partner resolves the ticket through replica two meanwhile. The reset
    waits for the evaluation and comes after it: the state is gone, not written back."""
    one = make_store(notifications=[WEBHOOK])
    two = Store(one.config)
    try:
        [agent] = _site(one)
        book = RuleBook(one.config)
        rule = book.base["rtt"]
        with one.read() as c:
            ctx = load_site_context(c, agent["site_id"])
        key = {"site_id": ctx.site_id, "rule_id": "rtt", "target": "t"}
        state = {"bad_count": 3, "good_count": 0, "active": True, "level": "warning",
                 "bad_results": [], "updated_at": 1.0}  # fmt: skip
        with one.write() as c:
            tid = tickets.trip(c, one.config, ctx, rule, "t", "warning", [], 1.0)
            c.execute(rule_state.insert().values(**key, **state))
        done = threading.Event()

        def resolve() -> None:
            with two.write() as c:
                tickets.resolve(c, two.config, agent["partner_id"], tid, "test", "fixed", 2.0)
            done.set()

        t = threading.Thread(target=resolve)
        with one.write() as c:
            lock_site(c, ctx.site_id)
            t.start()
            _wait_for_lock_waiter(one)
            c.execute(
                rule_state.update()
                .where(*(rule_state.c[k] == v for k, v in key.items()))
                .values(bad_count=4)
            )
        t.join(30)
        assert done.is_set()
        with one.read() as c:
            assert c.execute(sa.select(rule_state)).all() == []
    finally:
        two.dispose()
