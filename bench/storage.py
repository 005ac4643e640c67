"""Bytes per stored result for the agent's default schedule, before and after the compact
layout, on SQLite and PostgreSQL, beside the JSON size of the results themselves.

The results are real: the default schedule's probes run once on loopback against a
responder started here (ping of the gateway and of the responder, the host facts, a 30 s
G.711 voice stream, SIP OPTIONS, the bandwidth test), or are read from a file of captured
results (`--from tests/data/results_default_mix.json`). They are replayed with fresh ids
and times as `--sites` sites of one day each, in the schedule's proportions (per site and
day: 2 x 1,440 pings, 1,440 OPTIONS, 288 host facts, 288 voice streams, 3 bandwidth
tests). "before" stores them as migration 0003 did (JSON measurement, partner column, two
time indexes); "after" through the collector's ingest at the newest schema. Bytes per
result are the growth of the database (SQLite: the file, checkpointed; PostgreSQL: the
results table with its partitions, indexes and TOAST, and the roll-up marks) divided by the
results stored. The hourly and daily roll-ups of the day are then computed and measured
per site and day. First, each probe's stored measurement is printed beside its JSON, with
the time to encode and decode it beside orjson's to dump and load the JSON.

    .venv/bin/python bench/storage.py [--db sqlite,postgresql] [--sites 4] [--from FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.wire.plain import new_result_id  # noqa: E402
from collector import compact, retention, rollups, tenants  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.db import _alembic_config  # noqa: E402
from collector.evaluation import RuleBook  # noqa: E402
from collector.ingest import ingest  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import PgCluster, pg_bin  # noqa: E402

DAY = 86400.0
# The default schedule (agent/runtime/config.py default_modules) for a site with a
# responder and a SIP server: probe -> (results per day, interval in seconds).
SCHEDULE = {
    "icmp": (2 * 1440, 60.0 / 2),
    "sip_options": (1440, 60.0),
    "host": (288, 300.0),
    "udp": (288, 300.0),
    "bandwidth": (3, 28800.0),
}


async def _capture() -> list[dict[str, Any]]:
    from agent.cli.stack import free_port, free_port_both
    from agent.probes import run_probe
    from agent.responder.service import ResponderConfig, start_services

    twamp, bw, sip = free_port_both(), free_port(), free_port_both()
    cfg = ResponderConfig(bind="127.0.0.1", twamp_port=twamp, bandwidth_port=bw, sip_port=sip)
    services = await start_services(cfg)
    runs = [
        ("icmp", "127.0.0.1", None),
        ("host", "local", None),
        ("sip_options", f"sip:127.0.0.1:{sip}", None),
        ("udp", f"127.0.0.1:{twamp}", {"codec": "G711_PLC", "duration_s": 30}),
        ("bandwidth", f"127.0.0.1:{bw}", None),
    ]
    out = []
    try:
        for name, target, options in runs:
            r = await run_probe(name, target, options)
            doc = r.to_json_dict()
            print(f"  {name}: success={r.success}, {len(orjson.dumps(doc))} bytes of JSON")
            out.append(doc)
    finally:
        for s in reversed(services):
            await s.stop()
    return out


def _per_call(fn: Any, seconds: float = 0.2) -> float:
    """Microseconds per call of `fn`, the best of three runs of about `seconds` each."""
    n = max(1, int(seconds / max(timeit.timeit(fn, number=1), 1e-7)))
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def _codec_timings(m: Any, text: bytes, blob: bytes) -> list[float]:
    """µs per call: orjson dumps, encode, orjson loads, decode of one measurement."""
    return [
        _per_call(lambda: orjson.dumps(m)),
        _per_call(lambda: compact.encode(m)),
        _per_call(lambda: orjson.loads(text)),
        _per_call(lambda: compact.decode(blob)),
    ]


def day_of_results(mix: dict[str, dict[str, Any]], day: float) -> list[dict[str, Any]]:
    """One site's day of the default schedule, from the captured result of each probe."""
    items = []
    for probe, (count, step) in SCHEDULE.items():
        for i in range(count):
            item = copy.deepcopy(mix[probe])
            t = day + i * step
            # the agent's id of a result made when the probe ended (time-ordered, UUIDv7)
            item["id"] = str(new_result_id(int((t + item["duration_ms"] / 1000) * 1000)))
            item["started_at"] = datetime.fromtimestamp(t, UTC).isoformat()
            items.append(item)
    return sorted(items, key=lambda x: x["started_at"])


def arrivals(days: list[list[dict[str, Any]]]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The sites' results in the order a fleet's uploads arrive: each site's results of a
    minute (by the time each was made, its start plus its duration) in one batch, as the
    agent ships about once a minute; the batches of every site in time order."""
    batches: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for site, items in enumerate(days):
        for x in items:
            made = datetime.fromisoformat(x["started_at"]).timestamp() + x["duration_ms"] / 1000
            batches.setdefault((int(made // 60), site), []).append(x)
    return [(site, batches[(minute, site)]) for minute, site in sorted(batches)]


def _site(store: Store, name: str, now: float) -> dict[str, Any]:
    with store.write() as c:
        partner, _ = tenants.create_partner(c, name, now)
        customer = tenants.create_customer(c, partner["id"], "c", "", now)
        site = tenants.create_site(c, partner["id"], customer["id"], {"name": "s"}, now)
        token = tenants.create_token(c, partner["id"], site["id"], 60, now)["token"]
        agent_id = tenants.enroll(c, token, "a", "0", now)["agent_id"]
        return tenants.get_agent(c, partner["id"], agent_id)


def db_bytes(store: Store) -> int:
    if store.is_sqlite:
        store.checkpoint()
        with store.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = c.exec_driver_sql("PRAGMA page_count").scalar() or 0
            free = c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
            size = c.exec_driver_sql("PRAGMA page_size").scalar() or 0
        return int((pages - free) * size)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE")  # no effect on size: settles the visibility map
        return int(
            c.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM ("
                "SELECT relid FROM pg_partition_tree('results') UNION ALL "
                "SELECT 'rollup_pending'::regclass WHERE to_regclass('rollup_pending') IS NOT NULL"
                ") t"
            ).scalar()
            or 0
        )


def rollup_bytes(store: Store) -> int:
    if store.is_sqlite:
        store.checkpoint()
        with store.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = c.exec_driver_sql("PRAGMA page_count").scalar() or 0
            free = c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
            size = c.exec_driver_sql("PRAGMA page_size").scalar() or 0
        return int((pages - free) * size)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE rollups")
        return int(c.exec_driver_sql("SELECT pg_total_relation_size('rollups')").scalar() or 0)


def store_before(url: str, days: list[list[dict[str, Any]]]) -> int:
    """The 0003 layout: rows as that ingest wrote them; returns the bytes grown."""
    engine = sa.create_engine(url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    store = Store(CollectorConfig(db=url), engine=engine)
    before = _old_bytes(store)
    old = sa.Table("results", sa.MetaData(), autoload_with=engine)
    typed = sa.Table(
        "results_typed", sa.MetaData(),
        *[sa.Column(c.name, sa.JSON if c.name in ("error", "measurement", "tags") else c.type)
          for c in old.c],
    )  # fmt: skip
    typed.name = "results"
    for site, items in arrivals(days):
        rows = [
            {
                "id": x["id"], "partner_id": str(uuid.UUID(int=site + 1)),
                "site_id": str(uuid.UUID(int=site + 1)),
                "agent_id": str(uuid.uuid4()), "schema_version": 2, "probe": x["probe"],
                "target": x["target"], "module": None,
                "started_at": datetime.fromisoformat(x["started_at"]).timestamp(),
                "duration_ms": x["duration_ms"], "success": x["success"], "error": x["error"],
                "measurement": x["measurement"], "job_id": None, "tags": {},
                "received_at": time.time(),
            }
            for x in items
        ]  # fmt: skip
        with engine.begin() as c:
            c.execute(typed.insert(), rows)
    grown = _old_bytes(store) - before
    engine.dispose()
    return grown


def _old_bytes(store: Store) -> int:
    if store.is_sqlite:
        return db_bytes(store)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE results")
        return int(c.exec_driver_sql("SELECT pg_total_relation_size('results')").scalar() or 0)


def store_after(url: str, days: list[list[dict[str, Any]]], day: float) -> tuple[int, int]:
    """Through ingest at the newest schema; returns (bytes grown, roll-up bytes)."""
    store = Store(CollectorConfig(db=url))
    store.migrate()
    retention.ensure_partitions(store, day)
    agents = [_site(store, f"site-{i}", day) for i in range(len(days))]
    before = db_bytes(store)
    book = RuleBook(store.config)
    for site, items in arrivals(days):
        out = ingest(store, book, agents[site], items, day + DAY + 60)
        assert out.rejected == 0, out.items[:3]
    grown = db_bytes(store) - before
    base = rollup_bytes(store)
    rollups.roll_due(store, day + DAY + 3600, limit=100_000)
    rolled = rollup_bytes(store) - base
    store.dispose()
    return grown, rolled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--sites", type=int, default=4, help="sites, one day of results each")
    ap.add_argument("--from", dest="source", help="captured results (JSON list) to replay")
    args = ap.parse_args()
    if args.source:
        captured = json.loads(Path(args.source).read_text())
        print(f"results read from {args.source}")
    else:
        print("running the default schedule's probes once on loopback...")
        captured = asyncio.run(_capture())
    mix = {r["probe"]: r for r in captured}
    missing = set(SCHEDULE) - set(mix)
    if missing:
        sys.exit(f"no captured result for {', '.join(sorted(missing))}")
    day = (time.time() // DAY) * DAY - 2 * DAY
    days = [day_of_results(mix, day) for _ in range(args.sites)]
    n = sum(len(d) for d in days)
    json_bytes = sum(len(orjson.dumps(x)) for d in days for x in d) / n
    per_probe = {p: len(orjson.dumps(mix[p])) for p in SCHEDULE}
    print(f"{n} results ({n // args.sites} per site and day); JSON per result: "
          f"{json_bytes:,.0f} bytes on average; by probe: "
          + ", ".join(f"{p} {b:,}" for p, b in per_probe.items()))  # fmt: skip
    print()
    print("The stored form of each probe's measurement (collector/compact.py) beside its JSON:")
    print("| probe | JSON bytes | stored bytes | orjson dumps µs | encode µs | orjson loads µs "
          "| decode µs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for probe in SCHEDULE:
        m = mix[probe]["measurement"]
        text, blob = orjson.dumps(m), compact.encode(m)
        assert compact.decode(blob) == m
        t = _codec_timings(m, text, blob)
        print(f"| {probe} | {len(text):,} | {len(blob):,} | {t[0]:,.1f} | {t[1]:,.1f} "
              f"| {t[2]:,.1f} | {t[3]:,.1f} |")  # fmt: skip
    print()
    print("| db | before: bytes per result | after: bytes per result | JSON bytes per result "
          "| after: MB per site and day | roll-ups: kB per site and day |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for kind in args.db.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"qs-storage-{kind}-"))
        cluster = None
        try:
            if kind == "sqlite":
                url_before = f"sqlite:///{work}/before.sqlite3"
                url_after = f"sqlite:///{work}/after.sqlite3"
            else:
                bindir = pg_bin()
                if bindir is None:
                    print(f"| {kind} | (no PostgreSQL binaries) | | | | |")
                    continue
                cluster = PgCluster(bindir)
                cluster.start()
                admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.exec_driver_sql("CREATE DATABASE before")
                    c.exec_driver_sql("CREATE DATABASE after")
                admin.dispose()
                url_before, url_after = cluster.url("before"), cluster.url("after")
            old = store_before(url_before, days)
            new, rolled = store_after(url_after, days, day)
            per_site = new / args.sites / 1e6
            print(f"| {kind} | {old / n:,.0f} | {new / n:,.0f} | {json_bytes:,.0f} "
                  f"| {per_site:,.2f} | {rolled / args.sites / 1e3:,.0f} |")  # fmt: skip
        finally:
            if cluster is not None:
                cluster.stop()
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
