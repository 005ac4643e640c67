"""Metrics at scale: the operator's /metrics scrape of a real `collector serve` holding the
latest result of every default module of N agents, whole and in shards, and shared by
scrapes that arrive together.

The store is filled through the real ingest path: each agent posts one result per module and
target of the agent's default schedule, recorded from the real probes on loopback
(bench/fleet.py, `record_mix`). Then, on SQLite or PostgreSQL:
  - whole: `GET /metrics` `--repeat` times: bytes, series (sample lines), wall time, and the
    collector's CPU per scrape (the collector, plus PostgreSQL's processes);
  - shards: `GET /metrics?shard=i&shards=n` for every i, for each n of `--shards`: the
    largest shard's bytes and time, and the CPU of the n scrapes together;
  - shared: two scrapes sent at once (an HA pair of Prometheus servers), CPU for both.

Usage: python bench/metrics_scale.py [--db sqlite] [--agents 10000] [--shards 4,16]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import ingest as ib  # noqa: E402
from bench.fleet import Database, Template, record_mix, start_collector  # noqa: E402
from tests.collector.pg import free_port  # noqa: E402


def fill(base: str, keys: list[str], mix: list[Template], conc: int = 16) -> int:
    """Every agent posts one result of each module and target (as one gzip batch)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    stored = 0

    async def run() -> None:
        nonlocal stored
        sem = asyncio.Semaphore(conc)
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:

            async def one(key: str) -> None:
                nonlocal stored
                docs = [{**t.doc, "id": str(uuid.uuid4()), "started_at": at} for t in mix]
                body = gzip.compress(json.dumps({"results": docs}).encode())
                headers = {"Authorization": f"Bearer {key}", "Content-Encoding": "gzip",
                           "Content-Type": "application/json"}  # fmt: skip
                async with sem:
                    for attempt in range(5):  # a connection the busy server dropped: again
                        try:
                            r = await client.post("/api/v1/results", content=body,
                                                  headers=headers)  # fmt: skip
                            break
                        except httpx.TransportError:
                            if attempt == 4:
                                raise
                if r.status_code != 200:
                    raise SystemExit(f"ingest answered {r.status_code}: {r.text[:200]}")
                stored += r.json()["stored"]

            await asyncio.gather(*(one(k) for k in keys))

    asyncio.run(run())
    return stored


Scrape = tuple[int, int, float, float]


def scrape(base: str, token: str, params: dict[str, int] | None = None) -> Scrape:
    """(bytes, series, wall seconds, server CPU seconds) of one scrape."""
    c0, t0 = ib.cpu_now(), time.perf_counter()
    r = httpx.get(f"{base}/metrics", params=params, timeout=600,
                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    wall, cpu = time.perf_counter() - t0, ib.cpu_now() - c0
    r.raise_for_status()
    series = sum(1 for line in r.text.splitlines() if line and not line.startswith("#"))
    return len(r.content), series, wall, cpu


def pair(base: str, token: str) -> tuple[float, float]:
    """Two scrapes sent at once: (wall seconds of the slower, server CPU seconds in all)."""

    async def run() -> float:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:
            headers = {"Authorization": f"Bearer {token}"}
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(client.get("/metrics", headers=headers) for _ in "ab"))
            for r in rs:
                r.raise_for_status()
            assert rs[0].content.count(b"\n") == rs[1].content.count(b"\n")
            return time.perf_counter() - t0

    c0 = ib.cpu_now()
    wall = asyncio.run(run())
    return wall, ib.cpu_now() - c0


def run_db(kind: str, args: argparse.Namespace, mix: list[Template], work: Path) -> list[str]:
    db = Database(kind, work)
    rows = []
    try:
        fleet = ib.setup_tenants(db.store, args.agents)
        port = free_port()
        proc = start_collector(db.url, port, work)
        ib.SERVER_PIDS[:] = db.server_pids(proc)
        base = f"http://127.0.0.1:{port}"
        token = (work / "token").read_text()
        try:
            t0 = time.monotonic()
            stored = fill(base, fleet.keys, mix)
            print(f"# {kind}: {stored:,} results stored in {time.monotonic() - t0:.0f} s",
                  flush=True)  # fmt: skip
            whole = [scrape(base, token) for _ in range(args.repeat)]
            size, series = whole[-1][0], whole[-1][1]
            wall = statistics.median(w[2] for w in whole)
            cpu = statistics.median(w[3] for w in whole)
            rows.append(
                f"| {kind} | {args.agents:,} | whole | {size / 1e6:,.1f} MB | {series:,} | "
                f"{wall:.2f} | {cpu:.2f} | {cpu * 1e6 / series:.1f} |"
            )
            for n in args.shards:
                parts = [scrape(base, token, {"shard": i, "shards": n}) for i in range(n)]
                assert sum(p[1] for p in parts) == series, "shards do not add up to the whole"
                big = max(parts, key=lambda p: p[0])
                cpu_n = sum(p[3] for p in parts)
                rows.append(
                    f"| {kind} | {args.agents:,} | {n} shards (largest) | {big[0] / 1e6:,.1f} MB |"
                    f" {big[1]:,} | {big[2]:.2f} | {big[3]:.2f} (all {n}: {cpu_n:.2f}) | "
                    f"{cpu_n * 1e6 / series:.1f} |"
                )
            pw, pc = pair(base, token)
            rows.append(
                f"| {kind} | {args.agents:,} | 2 at once (shared) | {size / 1e6:,.1f} MB each | "
                f"{series:,} | {pw:.2f} | {pc:.2f} for both | {pc * 1e6 / series:.1f} |"
            )
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        db.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--shards", default="4,16")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    args.shards = [int(x) for x in args.shards.split(",") if x.strip()]
    work = Path(tempfile.mkdtemp(prefix="qs-metrics-"))
    try:
        mix = record_mix(work)
        rows = []
        for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
            sub = work / kind
            sub.mkdir()
            rows += run_db(kind, args, mix, sub)
        print()
        print("| db | agents | scrape | size | series | wall s | collector CPU s | "
              "CPU µs per series |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
