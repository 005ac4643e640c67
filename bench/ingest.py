"""Collector ingest benchmark: simulated agents post batches to a real collector process.

For each database (SQLite, and PostgreSQL in a private cluster), prints:
  - throughput: closed-loop clients posting batches of `--batch` results (results/s,
    request p50/p99), with the collector pinned to one CPU core when `taskset` exists;
  - fleet: `--agents` agents each posting one batch every `--period` seconds at a random
    phase (open loop), request p50/p99 and how late the generator itself ran;
  - raw insert ceiling: the same rows inserted straight into the same database, in
    transactions of `--batch` rows (no HTTP, no validation): the physical limit.

Usage: python bench/ingest.py [--db sqlite,postgresql] [--duration 20] [--agents 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector import compact  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.schema import agents, customers, partners, results, sites  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import PgCluster, free_port, pg_bin  # noqa: E402

RESULT_TEMPLATE = (
    '{"schema_version":2,"id":"%s","probe":"icmp","target":"192.0.2.%d",'
    '"started_at":"%s","duration_ms":1000.0,"success":true,"measurement":'
    '{"sent":10,"received":10,"loss_pct":0.0,"jitter_ms":%.2f,"rtt_ms":{"min":9.1,'
    '"avg":%.2f,"median":11.0,"p95":14.2,"max":15.0}}}'
)


def batch_body(n: int, rnd: random.Random) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    items = [
        RESULT_TEMPLATE % (uuid.uuid4(), i % 8, now, rnd.uniform(0, 5), rnd.uniform(10, 40))
        for i in range(n)
    ]
    return ('{"results":[' + ",".join(items) + "]}").encode()


@dataclass
class Fleet:
    keys: list[str]


def setup_tenants(store: Store, n_agents: int) -> Fleet:
    """One partner, one customer, a site and an enrolled agent per simulated agent."""
    now = time.time()
    keys = [f"qsa_bench_{uuid.uuid4().hex}" for _ in range(n_agents)]
    pid, cid = str(uuid.uuid4()), str(uuid.uuid4())
    site_rows, agent_rows = [], []
    for i, key in enumerate(keys):
        sid = str(uuid.uuid4())
        site_rows.append(
            {
                "id": sid,
                "partner_id": pid,
                "customer_id": cid,
                "name": f"site-{i}",
                "contacts": [],
                "call_info": {},
                "rule_overrides": {},
                "created_at": now,
                "contracted_down_bps": 100_000_000,
                "contracted_up_bps": 20_000_000,
            }
        )
        agent_rows.append(
            {
                "id": str(uuid.uuid4()),
                "partner_id": pid,
                "site_id": sid,
                "hostname": f"a{i}",
                "version": "bench",
                "key_hash": hashlib.sha256(key.encode()).hexdigest(),
                "created_at": now,
                "last_seen_at": now,
            }
        )
    with store.write() as c:
        c.execute(
            partners.insert().values(
                id=pid,
                name="bench",
                key_hash=hashlib.sha256(pid.encode()).hexdigest(),
                rule_overrides={},
                created_at=now,
            )
        )
        c.execute(
            customers.insert().values(
                id=cid, partner_id=pid, name="bench", notes="", created_at=now
            )
        )
        c.execute(sites.insert(), site_rows)
        c.execute(agents.insert(), agent_rows)
    return Fleet(keys)


def start_collector(db_url: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    cfg = workdir / "collector.yml"
    cfg.write_text(
        json.dumps({"db": db_url, "log_level": "warning", "silent_check_interval_s": 3600})
    )
    cmd = [
        str(Path(sys.executable).parent / "qos-scout"),
        "collector",
        "serve",
        "--config",
        str(cfg),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(workdir / "log", "wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"collector did not start; see {workdir / 'log'}")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


SERVER_PIDS: list[int] = []  # the collector and, for PostgreSQL, the postmaster


def cpu_now() -> float:
    """CPU seconds used so far by the server side: each server process, its live children,
    and the children it has already reaped (PostgreSQL backends that exited)."""
    total = 0.0
    for pid in SERVER_PIDS:
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            kids = p.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for q in kids:
            try:
                k = q.cpu_times()
                total += k.user + k.system
            except psutil.NoSuchProcess:
                pass
    return total


class RawPool:
    """A minimal HTTP/1.1 keep-alive client (a fixed pool of connections), so the load
    generator spends little CPU per request and measures the collector, not itself."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.conns: list[asyncio.StreamWriter] = []

    async def open(self) -> RawPool:
        for _ in range(self.size):
            r, w = await asyncio.open_connection(self.host, self.port)
            self.conns.append(w)
            self.idle.put_nowait((r, w))
        return self

    async def post(self, path: str, body: bytes, key: str) -> tuple[int, bytes]:
        r, w = await self.idle.get()
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            w.write(head.encode() + body)
            status = int((await r.readline()).split()[1])
            length = 0
            while (line := await r.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await r.readexactly(length)
        finally:
            self.idle.put_nowait((r, w))

    def close(self) -> None:
        for w in self.conns:
            w.close()


async def throughput(url: str, keys: list[str], batch: int, conc: int, duration: float):
    lat: list[float] = []
    stored = 0
    errors = 0
    rnd = random.Random(1)
    host, port = url.removeprefix("http://").split(":")
    pool = await RawPool(host, int(port), conc).open()
    end = time.monotonic() + duration

    async def worker(i: int) -> None:
        nonlocal stored, errors
        key = keys[i % len(keys)]
        while time.monotonic() < end:
            body = batch_body(batch, rnd)
            t0 = time.perf_counter()
            status, data = await pool.post("/api/v1/results", body, key)
            lat.append(time.perf_counter() - t0)
            if status == 200:
                stored += json.loads(data)["stored"]
            else:
                errors += 1

    t0, c0 = time.monotonic(), cpu_now()
    await asyncio.gather(*(worker(i) for i in range(conc)))
    elapsed, cpu_s = time.monotonic() - t0, cpu_now() - c0
    pool.close()
    return stored / elapsed, lat, errors, stored / cpu_s if cpu_s else float("nan")


async def fleet(url: str, keys: list[str], batch: int, period: float, periods: int):
    """Each agent posts once at a random phase within `period` (open loop). Latency runs
    from the scheduled send until the answer is read (waiting for a free connection
    included); `lag` is how late the generator itself was at each send."""
    lat: list[float] = []
    lag: list[float] = []
    errors = 0
    rnd = random.Random(2)
    phases = {k: rnd.uniform(0, period) for k in keys}
    # Every agent reports once per period; only the last period is measured (the first
    # ones are agents' first contact, when keys and sites are not cached yet).
    plan = sorted(
        (n * period + phases[k], k, n == periods - 1) for n in range(periods) for k in keys
    )
    host, port = url.removeprefix("http://").split(":")
    pool = await RawPool(host, int(port), 256).open()
    start = time.monotonic()

    async def one(key: str, measured: bool) -> None:
        nonlocal errors
        body = batch_body(batch, rnd)
        t0 = time.perf_counter()
        status, _ = await pool.post("/api/v1/results", body, key)
        if measured:
            lat.append(time.perf_counter() - t0)
        if status != 200:
            errors += 1

    tasks = []
    cpu0 = None
    for at, key, measured in plan:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if measured and cpu0 is None:
            cpu0 = cpu_now()
        if measured:
            lag.append(max(0.0, time.monotonic() - (start + at)))
        tasks.append(asyncio.create_task(one(key, measured)))
    await asyncio.gather(*tasks)
    cpu_s = cpu_now() - (cpu0 or 0.0)
    pool.close()
    return lat, lag, errors, cpu_s


def raw_ceiling(store: Store, batch: int, duration: float) -> float:
    """Rows/s inserting the same rows straight through the database driver (JSON already
    serialised, no HTTP, no validation, no rules), one transaction per batch."""
    with store.read() as c:
        a = c.execute(sa.select(agents).limit(1)).one()
    cols = [c.name for c in results.c]
    marks = [
        "?" if store.is_sqlite else ("%s::jsonb" if c in ("error", "tags") else "%s") for c in cols
    ]
    sql = f"INSERT INTO results ({','.join(cols)}) VALUES ({','.join(marks)})"
    rnd = random.Random(3)
    n = 0
    end = time.monotonic() + duration
    t0, c0 = time.monotonic(), time.process_time() + cpu_now()
    while time.monotonic() < end:
        doc = json.loads(batch_body(batch, rnd))["results"]
        now = time.time()
        rows = []
        for r in doc:
            row = {
                "id": compact.uuid_bytes(r["id"]) if store.is_sqlite else r["id"],
                "started_at": now,
                "site_id": compact.uuid_bytes(a.site_id) if store.is_sqlite else a.site_id,
                "agent_id": compact.uuid_bytes(a.id) if store.is_sqlite else a.id,
                "schema_version": 1,
                "probe": r["probe"],
                "target": r["target"],
                "module": None,
                "duration_ms": r["duration_ms"],
                "success": True,
                "error": None,
                "measurement": compact.encode(r["measurement"]),  # the stored form
                "job_id": None,
                "tags": None,
                "received_at": now,
            }
            rows.append(tuple(row[c] for c in cols))
        with store.write() as c:
            c.exec_driver_sql(sql, rows)
        n += len(rows)
    cpu_s = time.process_time() + cpu_now() - c0
    return n / (time.monotonic() - t0), n / cpu_s


def run_db(kind: str, args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix=f"qs-bench-{kind}-"))
    cluster = None
    try:
        if kind == "sqlite":
            url = f"sqlite:///{work}/collector.sqlite3"
        else:
            bindir = pg_bin()
            if bindir is None:
                return {"db": kind, "skipped": "PostgreSQL binaries not found"}
            cluster = PgCluster(bindir)
            cluster.start()
            eng = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.exec_driver_sql("CREATE DATABASE bench")
            eng.dispose()
            url = cluster.url("bench")
        store = Store(CollectorConfig(db=url))
        store.migrate()
        fl = setup_tenants(store, args.agents)
        port = free_port()
        proc = start_collector(url, port, work)
        SERVER_PIDS[:] = [proc.pid]
        if cluster:
            SERVER_PIDS.append(int((cluster.data / "postmaster.pid").read_text().split()[0]))
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(throughput(base, fl.keys[:50], args.batch, args.concurrency, 2.0))  # warm
            rate, lat, err, per_cpu = asyncio.run(
                throughput(
                    base,
                    fl.keys[: args.concurrency * 4],
                    args.batch,
                    args.concurrency,
                    args.duration,
                )
            )
            flat, flag, ferr, fcpu = [], [], 0, 0.0
            if not args.skip_fleet:
                flat, flag, ferr, fcpu = asyncio.run(
                    fleet(base, fl.keys, args.fleet_batch, args.period, args.fleet_periods)
                )
        finally:
            proc.terminate()
            proc.wait(30)
        SERVER_PIDS[:] = SERVER_PIDS[1:]  # the collector is gone; keep the postmaster
        ceiling, ceiling_cpu = raw_ceiling(store, args.batch, min(args.duration, 10.0))
        store.dispose()
        return {
            "db": kind,
            "rate": rate,
            "per_cpu": per_cpu,
            "fleet_cpu_ms": fcpu / len(flat) * 1e3 if flat else float("nan"),
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "requests": len(lat),
            "errors": err,
            "ceiling": ceiling,
            "ceiling_cpu": ceiling_cpu,
            "fleet_requests": len(flat),
            "fleet_p50": pct(flat, 50),
            "fleet_p99": pct(flat, 99),
            "fleet_lag_p99": pct(flag, 99),
            "fleet_errors": ferr,
            "fleet_rps": len(flat) / args.period if flat else 0.0,
        }
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--duration", type=float, default=20.0, help="throughput phase, seconds")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--period", type=float, default=60.0)
    ap.add_argument("--fleet-batch", type=int, default=10, help="results per fleet batch")
    ap.add_argument("--fleet-periods", type=int, default=2, help="the last one is measured")
    ap.add_argument("--skip-fleet", action="store_true")
    args = ap.parse_args()
    pinned = "collector pinned to CPU 0" if shutil.which("taskset") else "collector not pinned"
    print(
        f"# ingest benchmark: batch {args.batch}, {args.concurrency} clients, "
        f"{args.duration:.0f} s; fleet {args.agents} agents every {args.period:.0f} s "
        f"({args.fleet_batch} results each); {pinned}; {os.cpu_count()} CPUs"
    )
    rows = [run_db(k.strip(), args) for k in args.db.split(",") if k.strip()]
    print()
    print("Throughput (closed loop) beside the raw insert ceiling; `per CPU-s` divides by the")
    print("CPU time the server side used (collector, plus the PostgreSQL processes), which")
    print("holds even when other work shares the machine.")
    print()
    print(
        "| db | results/s | results per CPU-s | p50 ms | p99 ms | raw insert rows/s | "
        "raw rows per CPU-s | errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['db']} | skipped: {r['skipped']} |")
            continue
        print(
            f"| {r['db']} | {r['rate']:,.0f} | {r['per_cpu']:,.0f} | {r['p50'] * 1e3:.1f} | "
            f"{r['p99'] * 1e3:.1f} | {r['ceiling']:,.0f} | {r['ceiling_cpu']:,.0f} | "
            f"{r['errors']} |"
        )
    if args.skip_fleet:
        return
    print()
    print("Fleet (open loop, last period measured): latency from send to answer.")
    print()
    print(
        "| db | requests/s | p50 ms | p99 ms | server CPU ms per request | "
        "generator lag p99 ms | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            continue
        print(
            f"| {r['db']} | {r['fleet_rps']:.0f} | {r['fleet_p50'] * 1e3:.1f} | "
            f"{r['fleet_p99'] * 1e3:.1f} | {r['fleet_cpu_ms']:.2f} | "
            f"{r['fleet_lag_p99'] * 1e3:.1f} | {r['fleet_errors']} |"
        )


if __name__ == "__main__":
    main()
