"""Retention and roll-ups on SQLite and PostgreSQL, with the clock passed in: roll-ups equal
the figures computed from the raw rows they summarise (late results re-roll their hour and
day), raw rows go once past their retention (whole partitions on PostgreSQL) while the
roll-ups stay, a partner's override is honoured, a retried result is stored once on either
side of a partition boundary, and a database at 0003 with results migrates without loss."""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from collector import partitions, retention, rollups, tenants
from collector.config import CollectorConfig
from collector.db import _alembic_config, make_engine
from collector.evaluation import RuleBook
from collector.ingest import ingest
from collector.schema import partners, results
from collector.schema import rollups as rollup_table
from collector.store import Store

DAY = 86400.0
HOUR = 3600.0
MIX = json.loads((Path(__file__).parents[1] / "data" / "results_default_mix.json").read_text())
# The first day of the tests: five days ago (inside limits.max_result_age_s), at 00:00 UTC.
D = partitions.day_start(datetime.now(UTC).timestamp()) - 5 * DAY


def _agent(store: Store, name: str, raw_days: int | None = None) -> dict[str, Any]:
    with store.write() as c:
        partner, _ = tenants.create_partner(c, name, D)
        if raw_days is not None:
            tenants.set_partner_retention(c, partner["id"], raw_days)
        customer = tenants.create_customer(c, partner["id"], "c", "", D)
        site = tenants.create_site(c, partner["id"], customer["id"], {"name": "s"}, D)
        token = tenants.create_token(c, partner["id"], site["id"], 60, D)["token"]
        agent_id = tenants.enroll(c, token, "a", "0", D)["agent_id"]
        return tenants.get_agent(c, partner["id"], agent_id)


def _items(rng: random.Random, times: list[float]) -> list[dict[str, Any]]:
    """Results of the real default mix (captured from the probes on loopback) at `times`,
    their rolled-up figures set to random values; every seventh one failed."""
    out = []
    for i, t in enumerate(times):
        item = copy.deepcopy(MIX[i % len(MIX)])
        item["id"] = str(uuid.uuid4())
        item["started_at"] = datetime.fromtimestamp(t, UTC).isoformat()
        item["target"] = f"{item['target']}#{i % 2}"
        if i % 7 == 3:
            error = {"class": "ProbeTimeout", "category": "timeout", "message": "x"}
            item.update(success=False, measurement=None, error=error)
        else:
            for f in rollups.figures(item["probe"]):
                node = item["measurement"]
                for key in f.path[:-1]:
                    node = node[key]
                node[f.path[-1]] = round(rng.uniform(0, 100), rng.choice([0, 3, 9]))
        out.append(item)
    return out


def _post(store: Store, agent: dict[str, Any], items: list[dict[str, Any]], now: float) -> Any:
    out = ingest(store, RuleBook(store.config), agent, items, now)
    assert out.rejected == 0, out.items
    return out


def _expected(store: Store, site: str, lo: float, hi: float) -> dict[tuple[Any, ...], Any]:
    """Roll-up figures computed here, from the raw rows of [lo, hi): numpy's inverted-CDF
    percentiles (nearest rank), Python's min/max and counts."""
    with store.read() as c:
        rows = c.execute(
            sa.select(results).where(
                results.c.site_id == site, results.c.started_at >= lo, results.c.started_at < hi
            )
        ).all()
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    vals: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        counts[(r.probe, r.target)][0] += 1
        counts[(r.probe, r.target)][1] += r.success
        for f in rollups.figures(r.probe):
            node: Any = r.measurement
            for key in f.path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float) and not isinstance(node, bool):
                vals[(r.probe, r.target, f.field, f.direction)].append(float(node))
    want: dict[tuple[Any, ...], Any] = {}
    for (probe, target), (n, ok) in counts.items():
        want[(probe, target, "", "")] = (n, ok, 0, None, None, None, None)
    for (probe, target, field, direction), v in vals.items():
        n, ok = counts[(probe, target)]
        a = np.array(v)
        want[(probe, target, field, direction)] = (
            n, ok, len(v), float(a.min()),
            float(np.percentile(a, 50, method="inverted_cdf")),
            float(np.percentile(a, 95, method="inverted_cdf")),
            float(a.max()),
        )  # fmt: skip
    return want


def _stored(store: Store, site: str, period: str, bucket: float) -> dict[tuple[Any, ...], Any]:
    t = rollup_table
    with store.read() as c:
        rows = c.execute(
            sa.select(t).where(t.c.site_id == site, t.c.period == period, t.c.bucket == bucket)
        ).all()
    return {
        (r.probe, r.target, r.field, r.direction): (
            r.count, r.ok, r.n, r.min, r.p50, r.p95, r.max
        )
        for r in rows
    }  # fmt: skip


def _raw_count(store: Store, site: str) -> int:
    with store.read() as c:
        q = sa.select(sa.func.count()).select_from(results).where(results.c.site_id == site)
        return int(c.execute(q).scalar() or 0)


def test_rollups_equal_the_raw_rows_and_outlive_them(make_store):
    store = make_store(retention={"raw_days": 2, "grace_s": 60})
    retention.ensure_partitions(store, D)
    agent = _agent(store, "roll")
    site = agent["site_id"]
    rng = random.Random(14)
    # Three hours of results, 90 s apart, posted during the fourth hour.
    times = [D + i * 90.0 + rng.uniform(0, 60) for i in range(120)]
    _post(store, agent, _items(rng, times), D + 3 * HOUR + 10)
    # Hours 0 and 1 are due; hour 2 closed 30 s ago, within the grace of 60 s.
    assert rollups.roll_due(store, D + 3 * HOUR + 30) == 2
    assert _stored(store, site, "hour", D + 2 * HOUR) == {}
    assert rollups.roll_due(store, D + 3 * HOUR + 61) == 1
    for h in range(3):
        got = _stored(store, site, "hour", D + h * HOUR)
        assert got and got == _expected(store, site, D + h * HOUR, D + (h + 1) * HOUR)
    # Nothing pending: the next pass rolls nothing.
    assert rollups.roll_due(store, D + 3 * HOUR + 120) == 0
    # Results arriving late for hour 1 re-roll it (and later its day).
    before = _stored(store, site, "hour", D + HOUR)
    late = [D + HOUR + 5.0 + i for i in range(9)]
    _post(store, agent, _items(rng, late), D + 5 * HOUR)
    assert rollups.roll_due(store, D + 5 * HOUR + 1) == 1
    after = _stored(store, site, "hour", D + HOUR)
    assert after != before
    assert after == _expected(store, site, D + HOUR, D + 2 * HOUR)
    assert after[("icmp", "127.0.0.1#0", "", "")][0] > before[("icmp", "127.0.0.1#0", "", "")][0]
    # The day, once closed, from the raw rows of the whole day.
    assert _stored(store, site, "day", D) == {}
    rollups.roll_due(store, D + DAY + 61)
    day = _stored(store, site, "day", D)
    assert day and day == _expected(store, site, D, D + DAY)
    # The voice figures are there per direction, named from the model's declarations.
    assert {("mos", "out"), ("mos", "back"), ("jitter_ms", "out"), ("loss_pct", "rtt")} <= {
        (k[2], k[3]) for k in day if k[0] == "udp"
    }
    # Past the raw retention: raw rows go, roll-ups stay as they were.
    hours = {h: _stored(store, site, "hour", D + h * HOUR) for h in range(3)}
    assert _raw_count(store, site) == 129
    gone = retention.expire(store, D + DAY + 2 * DAY + 1)
    assert _raw_count(store, site) == 0
    if not store.is_sqlite:
        assert partitions.name_of(D) in gone.partitions
        with store.read() as c:
            assert D not in partitions.existing(c)
    else:
        assert gone.results == 129
    assert _stored(store, site, "day", D) == day
    assert {h: _stored(store, site, "hour", D + h * HOUR) for h in range(3)} == hours
    # A result for an expired hour is kept until expiry but never replaces its roll-up.
    _post(store, agent, _items(rng, [D + HOUR + 1.5]), D + 3 * DAY + 2)
    rollups.roll_due(store, D + 3 * DAY + 3)
    assert _stored(store, site, "hour", D + HOUR) == hours[1]
    # Past the roll-up retention, the roll-ups go too.
    retention.expire(store, D + 401 * DAY)
    assert _stored(store, site, "day", D) == {}


def test_partner_override_keeps_its_own_period(make_store):
    store = make_store(retention={"raw_days": 3})
    retention.ensure_partitions(store, D)
    short = _agent(store, "short", raw_days=1)
    long = _agent(store, "long")
    rng = random.Random(4)
    for a in (short, long):
        _post(store, a, _items(rng, [D + 10.0 + i for i in range(12)]), D + 60)
    retention.expire(store, D + 2 * DAY + 1)
    assert _raw_count(store, short["site_id"]) == 0
    assert _raw_count(store, long["site_id"]) == 12
    if not store.is_sqlite:  # the partition stays for the partner who keeps 3 days
        with store.read() as c:
            assert D in partitions.existing(c)
    # SQLite deletes to the second; PostgreSQL drops a day's partition whole once the
    # whole day is past the retention (rows stay up to a day longer).
    retention.expire(store, D + 3 * DAY + 60)
    assert _raw_count(store, long["site_id"]) == (0 if store.is_sqlite else 12)
    retention.expire(store, D + 4 * DAY)
    assert _raw_count(store, long["site_id"]) == 0


def test_retried_results_are_stored_once_across_a_partition_boundary(make_store):
    store = make_store()
    retention.ensure_partitions(store, D)
    agent = _agent(store, "dup")
    edge = [D + DAY - 0.001, D + DAY, D + DAY + 0.001, D + 2 * DAY - 1e-6]
    batch = _items(random.Random(1), edge)
    first = _post(store, agent, batch, D + 2 * DAY)
    assert first.stored == 4
    again = _post(store, agent, batch[::-1], D + 2 * DAY + 5)
    assert again.stored == 0 and again.duplicates == 4
    assert _raw_count(store, agent["site_id"]) == 4
    if not store.is_sqlite:
        with store.read() as c:
            per = c.exec_driver_sql(
                "SELECT tableoid::regclass::text, count(*) FROM results GROUP BY 1"
            ).all()
        assert dict(per) == {partitions.name_of(D): 1, partitions.name_of(D + DAY): 3}


def test_partitions_created_late_take_their_rows_from_the_default(make_store):
    store = make_store()
    if store.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no partitions")
    agent = _agent(store, "late")
    far = D - 20 * DAY  # no partition: the row goes to the default partition
    _post(store, agent, _items(random.Random(2), [far + 5.0]), D)
    with store.write() as c:
        made = partitions.ensure(c, far, far)
    assert made == [partitions.name_of(far)]
    with store.read() as c:
        where = c.exec_driver_sql("SELECT tableoid::regclass::text FROM results").scalars().all()
    assert where == [partitions.name_of(far)]
    # the site/time index of a partition made after the migrations is packed full too (0013)
    with store.read() as c:
        opts = (
            c.exec_driver_sql(
                "SELECT i.reloptions FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
                "WHERE x.indrelid = %(t)s::regclass AND a.attname = 'site_id'",
                {"t": partitions.name_of(far)},
            )
            .scalars()
            .all()
        )
    assert opts == [["fillfactor=100"]]


def test_partner_retention_is_checked():
    from collector.errors import Invalid

    store = Store(CollectorConfig(db="sqlite://"))
    store.migrate()
    with store.write() as c:
        partner, _ = tenants.create_partner(c, "p", D)
        with pytest.raises(Invalid, match="raw_retention_days: 0 is not a number of days"):
            tenants.set_partner_retention(c, partner["id"], 0)
        tenants.set_partner_retention(c, partner["id"], 90)
        assert c.execute(sa.select(partners.c.raw_retention_days)).scalar() == 90
        tenants.set_partner_retention(c, partner["id"], None)
        assert c.execute(sa.select(partners.c.raw_retention_days)).scalar() is None


@pytest.fixture
def blank_url(request, tmp_path, db_url):
    """A database with no schema at all (the db_url fixture's PostgreSQL one is migrated)."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/blank.sqlite3"
        return
    cluster = request.getfixturevalue("pg_cluster")
    with cluster.database("b") as url:
        yield url


SITE, AGENT = str(uuid.uuid4()), str(uuid.uuid4())


def test_migration_from_0003_keeps_every_result(blank_url):
    engine = make_engine(blank_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    pg = engine.dialect.name == "postgresql"
    old = sa.Table("results", sa.MetaData(), autoload_with=engine)
    rng = random.Random(3)
    with engine.begin() as c:
        c.execute(sa.text(
            "INSERT INTO partners (id, name, key_hash, rule_overrides, created_at) "
            "VALUES ('p1', 'p', 'h', '{}', 0)"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO customers (id, partner_id, name, notes, created_at) "
            "VALUES ('c1', 'p1', 'c', '', 0)"
        ))  # fmt: skip
        c.execute(sa.text(
            "INSERT INTO sites (id, partner_id, customer_id, name, contacts, call_info, "
            "rule_overrides, created_at) VALUES (:s, 'p1', 'c1', 's', '[]', '{}', '{}', 0)"
        ), {"s": SITE})  # fmt: skip
    times = [D - 30 * DAY + i * 7919.0 for i in range(5000)]  # ~460 days of old rows
    rows = []
    for item in _items(rng, times):
        rows.append({
            "id": item["id"], "partner_id": "p1", "site_id": SITE, "agent_id": AGENT,
            "schema_version": 2, "probe": item["probe"], "target": item["target"],
            "module": None, "started_at": datetime.fromisoformat(item["started_at"]).timestamp(),
            "duration_ms": item["duration_ms"], "success": item["success"],
            "error": item["error"], "measurement": item["measurement"], "job_id": None,
            "tags": {}, "received_at": 1.0,
        })  # fmt: skip
    typed = sa.Table(
        "results", sa.MetaData(),
        *[sa.Column(c.name, sa.JSON if c.name in ("error", "measurement", "tags") else c.type)
          for c in old.c],
    )  # fmt: skip
    with engine.begin() as c:
        c.execute(typed.insert(), rows)
    Store(CollectorConfig(db=blank_url), engine=engine).migrate()
    with engine.connect() as c:
        got = {r.id: r for r in c.execute(sa.select(results))}
        if pg:
            kind = c.exec_driver_sql(
                "SELECT relkind FROM pg_class WHERE relname = 'results'"
            ).scalar()
            assert kind == "p"  # partitioned
            assert len(partitions.existing(c)) > 400
    assert len(got) == len(rows)
    for r in rows:
        g = got[r["id"]]
        assert (g.started_at, g.site_id, g.probe, g.success) == (
            r["started_at"],
            r["site_id"],
            r["probe"],
            r["success"],
        )
        assert g.measurement == r["measurement"] and g.error == r["error"]
    # And back to 0003, every row again with its partner.
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.connect() as c:
        back = c.execute(sa.text("SELECT id, partner_id, measurement FROM results")).all()
    assert len(back) == len(rows) and {b.partner_id for b in back} == {"p1"}
    engine.dispose()


def test_sqlite_expiry_gives_back_space(tmp_path):
    """Deleting a day of results in batches frees its pages; those beyond the kept share go
    back to the file system (a database the collector creates has incremental vacuum)."""
    store = Store(
        CollectorConfig(
            db=f"sqlite:///{tmp_path}/c.sqlite3",
            retention={"raw_days": 1, "delete_batch": 100, "sqlite_keep_free_pct": 10},
        )
    )
    store.migrate()
    agent = _agent(store, "space")
    rng = random.Random(9)
    times = [D + i * 30.0 for i in range(1500)]
    for i in range(0, len(times), 250):
        _post(store, agent, _items(rng, times[i : i + 250]), D + DAY - 1)

    def pages() -> tuple[int, int]:
        store.checkpoint()
        with store.read() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
            return (
                int(c.exec_driver_sql("PRAGMA page_count").scalar() or 0),
                int(c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0),
            )

    full, _ = pages()
    gone = retention.expire(store, D + 2 * DAY)
    assert gone.results == 1500 and _raw_count(store, agent["site_id"]) == 0
    after, free = pages()
    assert gone.pages_freed > 0 and after < full / 2
    assert 0 < free <= full * 0.10  # a tenth of the file kept free for the next rows
    store.dispose()
