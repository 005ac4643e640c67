"""Config check benchmark: the collector's CPU per agent config check answered 304 by the
fast path (collector/api/fastconfig.py), beside the same check answered by the FastAPI route
and an ordinary job poll, all in the same run against a real `collector serve` process.

Every agent checks its central config once a minute, so 10,000 agents make ~167 checks a
second, nearly all answered 304. The route's answer is reached with the same request plus a
query string (`?via=route`), which the route ignores and the fast path does not take; its
304 is the same. The job poll (`wait=0`, no job) is answered by its own fast path and is
the scale for what a request costs the collector at the least.

Each round sends `--requests` checks per kind from one kept-alive client, spread over the
agents of `--agents` sites (half of them with a site profile, so the route merges and
validates a central config; half without, version "local"), kinds interleaved; the
server's CPU (user + system, from /proc: the collector process and, on PostgreSQL, the
postmaster and its backends) is read around each batch. Medians over
`--rounds`, with the range.

Usage: python bench/config_check.py [--db sqlite|postgresql] [--agents 200]
                                    [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import ingest as ib  # noqa: E402
from bench.fleet import Database, start_collector  # noqa: E402
from collector import profiles  # noqa: E402
from collector.schema import sites  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import free_port  # noqa: E402

PROFILE = {
    "modules": {
        "ping_gw": {"probe": "icmp", "targets": ["192.0.2.1"], "interval_s": 60},
        "host": {"probe": "host", "targets": ["local"], "interval_s": 300},
    }
}


def site_profiles(store: Store, partner_id: str, site_ids: list[str]) -> None:
    """A site profile for each of `site_ids` (their agents get a central config)."""
    now = time.time()
    with store.write() as c:
        for sid in site_ids:
            profiles.put_profile(c, partner_id, "site", sid, PROFILE, now)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--agents", type=int, default=200, help="sites, one agent each (>= 2)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per kind per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.agents < 2 or args.requests < 1 or args.rounds < 1:
        ap.error("--agents must be at least 2, --requests and --rounds at least 1")
    work = Path(tempfile.mkdtemp(prefix="config-check-"))
    db = Database(args.db, work)
    proc = None
    try:
        fleet = ib.setup_tenants(db.store, args.agents)
        with db.store.read() as c:
            rows = c.execute(sa.select(sites.c.id, sites.c.partner_id)).all()
        site_profiles(db.store, rows[0].partner_id, [r.id for r in rows[: args.agents // 2]])
        port = free_port()
        proc = start_collector(db.url, port, work)
        ib.SERVER_PIDS[:] = db.server_pids(proc)  # on PostgreSQL the database's too
        cpu = ib.cpu_now

        base = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(timeout=30) as cl:
            auth = [{"Authorization": f"Bearer {k}"} for k in fleet.keys]
            etags = []
            for h in auth:  # the route's first answers: the keys and versions kept
                r = cl.get(base + "/agent/config", headers=h)
                if r.status_code != 200:
                    raise SystemExit(f"config fetch answered {r.status_code}: {r.text}")
                etags.append(r.headers["etag"])
            central = sum(e != '"local"' for e in etags)
            kinds = {
                "config check, fast path": ("/agent/config", 304, True),
                "config check, through the route": ("/agent/config?via=route", 304, True),
                "job poll (wait=0), fast path": ("/agent/jobs?wait=0", 200, False),
            }
            per: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for name, (path, want, conditional) in kinds.items():
                    c0 = cpu()
                    for i in range(args.requests):
                        j = i % len(auth)
                        h = {**auth[j], "If-None-Match": etags[j]} if conditional else auth[j]
                        r = cl.get(base + path, headers=h)
                        if r.status_code != want:
                            raise SystemExit(f"{path} answered {r.status_code}, not {want}")
                    per[name].append((cpu() - c0) / args.requests * 1e3)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        db.close()
    print(
        f"# {args.db}, {args.agents} agents ({central} with a central profile), "
        f"{args.requests} requests per kind per round, {args.rounds} rounds"
    )
    fast = statistics.median(per["config check, fast path"])
    print("| request | server CPU ms per request, median (range) | against the fast path |")
    print("|---|---:|---:|")
    for name, ms in per.items():
        med = statistics.median(ms)
        # /proc counts CPU in clock ticks (10 ms): a short run can read zero
        ratio = f"{med / fast:.1f}×" if fast else "below the clock's resolution"
        print(f"| {name} | {med:.3f} ({min(ms):.3f}–{max(ms):.3f}) | {ratio} |")
    route = statistics.median(per["config check, through the route"])
    print(
        f"# at 10,000 agents checking once a minute (167/s): fast path "
        f"{167 * fast / 1e3:.1%} of a core, through the route {167 * route / 1e3:.1%}"
    )


if __name__ == "__main__":
    main()
