"""Collector replicas benchmark: one replica of three killed with SIGKILL under load.

Starts a private PostgreSQL cluster, three `qos-scout collector serve` processes on it and
HAProxy in front of them (the backend of deploy/haproxy/haproxy.cfg: round robin, health
check on /readyz every 2 s, a refused connection retried on another replica), then posts
batches of `--batch` results through HAProxy from `--threads` clients, each re-sending a
batch until it is answered (as an agent's spool does). `--kill-at` seconds in, replica c2
gets SIGKILL; the load goes on to `--duration`. Per round it prints:

  - lost / duplicated: results the clients produced that the database does not hold, and
    rows beyond them (counted in the database);
  - retried: requests that failed and were sent again, and the batches they carried;
  - recovered: from the SIGKILL to the answer of the last batch that failed after it;
  - results/s in the 5 s before the kill (the reference, same run) and in the 5 s after
    it, over the replicas left.

Usage: python bench/replicas.py [--rounds 3] [--duration 20] [--kill-at 10] [--threads 8]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cli.stack import Stack  # noqa: E402
from collector import tenants  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.schema import results  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import PgCluster, pg_bin  # noqa: E402
from tests.collector.replicas import (  # noqa: E402
    HAPROXY,
    SHIPPED_CHECK,
    SHIPPED_CHECK_TIMEOUT,
    Loader,
    start_haproxy,
    start_replicas,
)


def one_round(cluster: PgCluster, n: int, args: argparse.Namespace) -> dict[str, float]:
    db = f"bench_replicas_{n}"
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {db}")
    admin.dispose()
    url = cluster.url(db)
    store = Store(CollectorConfig(db=url))
    store.migrate()
    now = time.time()
    with store.write() as c:
        partner, _ = tenants.create_partner(c, "bench", now)
        cust = tenants.create_customer(c, partner["id"], "Bench", "", now)
        site = tenants.create_site(c, partner["id"], cust["id"], {"name": "Load"}, now)
        token = tenants.create_token(c, partner["id"], site["id"], 600, now)["token"]
        agent = tenants.enroll(c, token, "loader", "0.1.0", now)
    stack = Stack(Path(tempfile.mkdtemp(prefix="qs-replicas-")))
    try:
        ports = start_replicas(stack, args.replicas, url, {})
        lb = start_haproxy(stack, ports, check=SHIPPED_CHECK, check_timeout=SHIPPED_CHECK_TIMEOUT)
        loader = Loader(lb, site["id"], agent["agent_id"], agent["agent_key"], batch=args.batch)
        workers = [threading.Thread(target=loader.run) for _ in range(args.threads)]
        started = time.monotonic()
        for t in workers:
            t.start()
        time.sleep(args.kill_at)  # the load runs this long before the kill
        killed_at = time.monotonic()
        stack.stop("c2", sig=signal.SIGKILL)
        time.sleep(max(0.0, args.duration - (time.monotonic() - started)))
        loader.stop.set()
        for t in workers:
            t.join(60)
        with store.read() as c:
            ids = [r for (r,) in c.execute(sa.select(results.c.id))]
    finally:
        stack.close()
        store.dispose()
    retried, recover = loader.after(killed_at)

    def rate(lo: float, hi: float) -> float:
        return sum(1 for a in loader.answered_at if lo <= a < hi) * args.batch / (hi - lo)

    return {
        "results": len(loader.sent),
        "lost": len(loader.sent - set(ids)),
        "duplicated": len(ids) - len(set(ids)) + len(set(ids) - loader.sent),
        "retried": retried,
        "batches_retried": sum(1 for f, _, _ in loader.retried if f >= killed_at),
        "duplicates_answered": loader.duplicates,
        "recover_s": recover,
        "before": rate(killed_at - 5, killed_at),
        "after": rate(killed_at, killed_at + 5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--kill-at", type=float, default=10.0)
    args = ap.parse_args()
    if args.kill_at < 5 or args.duration < args.kill_at + 5:
        ap.error("--kill-at must be at least 5 s, and --duration at least --kill-at + 5 s")
    bindir = pg_bin()
    if bindir is None or not Path(HAPROXY).exists():
        sys.exit("needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin) and haproxy")
    cluster = PgCluster(bindir)
    cluster.start()
    try:
        print(f"{args.replicas} replicas, {args.threads} clients x {args.batch} results/batch, "
              f"SIGKILL of c2 at {args.kill_at:g} s of {args.duration:g} s")  # fmt: skip
        head = (
            f"{'round':>5} {'results':>8} {'lost':>5} {'dup':>4} {'retried':>8} "
            f"{'batches':>8} {'dup.ans':>8} {'recover s':>10} {'before/s':>9} {'after/s':>8}"
        )
        print(head)
        for n in range(1, args.rounds + 1):
            r = one_round(cluster, n, args)
            print(
                f"{n:>5} {r['results']:>8} {r['lost']:>5} {r['duplicated']:>4} "
                f"{r['retried']:>8} {r['batches_retried']:>8} {r['duplicates_answered']:>8} "
                f"{r['recover_s']:>10.2f} {r['before']:>9.0f} {r['after']:>8.0f}"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
