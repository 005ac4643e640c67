"""Idle long-poll benchmark: what agents waiting for jobs cost a real collector process.

N agents (each enrolled at its own site, with its own key) hold `GET /api/v1/agent/jobs?
wait=W` against a real `qos-scout collector serve` (pinned to one core when `taskset`
exists), each polling again as soon as its poll answers, as the agent does. Their first
polls ask for a random part of W, so the fleet's re-polls are spread evenly as they are in
a real fleet. Once every agent's poll is held, the collector's CPU time
(utime + stime of /proc/<pid>/stat) is measured over `--duration` s. Printed beside:
  - the same collector with no poll held (its background loops), measured in the run;
  - the cost of one ordinary request (`GET /api/v1/agent/jobs` with no wait, sequential),
    so "CPU per waiting agent" can be read as "requests' worth"; it is answered by the
    fast path (collector/api/fastpoll.py), and the same request through the whole
    middleware stack and the FastAPI route (an extra query parameter sends it there) is
    printed beside it.

The load generator uses raw asyncio sockets (one per agent) and raises its own
RLIMIT_NOFILE; it runs in this process, the collector in another.

Usage: python bench/longpoll.py [--db sqlite,postgresql] [--agents 1000,10000]
                                [--wait 30] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import setup_tenants, start_collector  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import PgCluster, free_port, pg_bin  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of the process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        raise SystemExit(f"need {need} open files; the hard limit is {hard} (ulimit -Hn)")


async def request(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str, key: str
) -> tuple[int, bytes]:
    w.write(
        f"GET {path} HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    status = int((await r.readline()).split()[1])
    length = 0
    while (line := await r.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await r.readexactly(length)


class Fleet:
    """One connection per agent, each polling in a loop."""

    def __init__(self, port: int, keys: list[str], wait: float) -> None:
        self.port, self.keys, self.wait = port, keys, wait
        self.held = 0  # polls sent and not yet answered
        self.answers = 0
        self.jobs = 0
        self.errors: dict[str, int] = {}
        self.stop = False
        self.tasks: list[asyncio.Task[None]] = []
        self.all_held = asyncio.Event()  # set once 98 % of the agents hold a poll at once
        self.target = int(len(keys) * 0.98)

    async def agent(self, key: str, first_wait: float, opened: asyncio.Semaphore) -> None:
        async with opened:  # connect in bounded waves (the listen backlog is finite)
            r, w = await asyncio.open_connection("127.0.0.1", self.port)
        wait = first_wait
        try:
            while not self.stop:
                self.held += 1
                if self.held >= self.target:
                    self.all_held.set()
                try:
                    status, body = await request(r, w, f"/api/v1/agent/jobs?wait={wait}", key)
                finally:
                    self.held -= 1
                self.answers += 1
                if status != 200:
                    self.errors[str(status)] = self.errors.get(str(status), 0) + 1
                elif body != b'{"jobs":[]}':
                    self.jobs += 1
                wait = self.wait
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        finally:
            w.close()

    def start(self, rnd: random.Random) -> None:
        opened = asyncio.Semaphore(256)
        self.tasks = [
            asyncio.create_task(self.agent(k, round(rnd.uniform(0, self.wait), 3), opened))
            for k in self.keys
        ]

    async def close(self) -> None:
        self.stop = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def measure(pid: int, seconds: float) -> float:
    c0, t0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (proc_cpu_s(pid) - c0) / (time.monotonic() - t0)


async def run_db(db: str, url: str, sizes: list[int], wait: float, duration: float) -> None:
    store = Store(CollectorConfig(db=url))
    store.migrate()
    keys = setup_tenants(store, max(sizes)).keys
    store.dispose()
    work = Path(tempfile.mkdtemp(prefix="qs-lp-"))
    port = free_port()
    proc = start_collector(url, port, work)
    rnd = random.Random(7)
    try:
        pid = proc.pid
        idle = await measure(pid, min(duration, 20))
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):  # warm: the key cached, the code paths hot
            await request(r, w, "/api/v1/agent/jobs", keys[0])
        n = 2000
        c0 = proc_cpu_s(pid)
        for _ in range(n):
            status, _ = await request(r, w, "/api/v1/agent/jobs", keys[0])
            assert status == 200, status
        per_req = (proc_cpu_s(pid) - c0) / n
        # The same poll through the whole middleware stack and the FastAPI route: a
        # parameter the fast path does not know sends it there (the route ignores it).
        c0 = proc_cpu_s(pid)
        for _ in range(n):
            status, _ = await request(r, w, "/api/v1/agent/jobs?full=1", keys[0])
            assert status == 200, status
        per_full = (proc_cpu_s(pid) - c0) / n
        w.close()
        print(f"\n== {db}: collector pid {pid}, wait={wait:g} s, measured over {duration:g} s")
        print(f"reference: no poll held           {100 * idle:6.2f} % of one core")
        print(f"reference: one ordinary request   {1000 * per_req:6.3f} ms of CPU")
        print(f"reference: the same, FastAPI route {1000 * per_full:6.3f} ms of CPU")
        for size in sizes:
            fleet = Fleet(port, keys[:size], wait)
            t0 = time.monotonic()
            fleet.start(rnd)
            await asyncio.wait_for(fleet.all_held.wait(), 300)
            ramp = time.monotonic() - t0
            await asyncio.sleep(wait)  # the first (shortened) polls come back and re-poll
            a0 = fleet.answers
            used = await measure(pid, duration)
            polls_s = (fleet.answers - a0) / duration
            held = fleet.held
            await fleet.close()
            net = max(0.0, used - idle)
            per_1000 = 1000 * net / size
            print(
                f"{size:>6} agents waiting: {100 * used:6.2f} % of one core "
                f"({100 * net:5.2f} % above idle; {100 * per_1000:5.3f} % per 1,000 agents; "
                f"{polls_s:,.0f} polls answered/s = {polls_s * per_req * 100:5.2f} % "
                f"at the ordinary-request cost); held {held}, ramp {ramp:.1f} s, "
                f"jobs {fleet.jobs}, errors {fleet.errors or 0}"
            )
            if size == max(sizes):
                scale = 10_000 / size
                print(f"at 10,000 agents: {100 * net * scale:5.2f} % of one core above idle "
                      f"(target <= 10 %)")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default="sqlite", help="sqlite,postgresql")
    ap.add_argument("--agents", default="1000,10000")
    ap.add_argument("--wait", type=float, default=30.0, help="the agent's jobs.wait_s")
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args()
    sizes = [int(x) for x in args.agents.split(",")]
    raise_nofile(max(sizes) + 256)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    for db in args.db.split(","):
        if db == "sqlite":
            tmp = tempfile.mkdtemp(prefix="qs-lp-db-")
            asyncio.run(run_db(db, f"sqlite:///{tmp}/c.db", sizes, args.wait, args.duration))
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            bindir = pg_bin()
            if bindir is None:
                raise SystemExit("PostgreSQL binaries not found")
            cluster = PgCluster(bindir)
            cluster.start()
            try:
                asyncio.run(run_db(db, cluster.url(), sizes, args.wait, args.duration))
            finally:
                cluster.stop()


if __name__ == "__main__":
    main()
