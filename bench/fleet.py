"""Fleet benchmark: N agents on the agent's own default schedule, shipping as the real shipper
ships and each holding a job long-poll, against a real `collector serve` process.

How the load is made (nothing about the pattern is typed in here):
  1. The mix. A responder is started on loopback and every module of the agent's default
     schedule (`agent.runtime.config.default_modules`, with a responder and a SIP server
     set) is run once per target with the real probes; the results, as the agent spools
     them, are the templates. Modules that run only on loss (trace) are not in a healthy
     fleet's mix and are left out.
  2. The request pattern. `--templates` agents are simulated for `--trace-s` seconds of
     virtual time (an event loop whose clock jumps to the next timer): modules fall due as
     the scheduler's own `Plan` makes them (first run at random within the interval, then
     the module's phase), each target's result is put in a real `Spool` when its probe
     ends (its recorded duration), and the real `Shipper`, built from `ShippingConfig()`'s
     defaults, decides when to send and what goes in each batch. Its requests are recorded.
  3. The fleet. Each of the N agents takes a template shifted by a random phase, and holds
     a job long-poll (`GET /api/v1/agent/jobs?wait=JobsConfig().wait_s`, answered and
     re-sent at once, as the job runner does) on a connection of its own. Polls start spread
     over one wait, so their phases are uniform. Each ingest request opens a connection (the
     agent's idle connection has expired after uvicorn's 5 s keep-alive by the time it ships
     again), sends the gzip batch with the agent's key, and reads the answer; it times out
     after the agent's own `collector.timeout_s`. Each agent also checks its central config
     as `agent.runtime.central.ConfigSync` does: every `central.interval_s` (randomised by
     10 %), a GET of `/api/v1/agent/config` with `If-None-Match` on a new connection
     (answered 304: the sites have no profiles, so every version is "local"); the checks
     start spread over one interval. `--no-config-check` leaves them out.

Measured per database and fleet size: the collector's CPU (the collector process and, on
PostgreSQL, the postmaster and its backends; the collector pinned to one core) while only the
long-polls are held and the config checks made (`idle`), then over `--seconds` of the full
load; ingest latency from the scheduled send to the answer read; DB size before and after
(per stored result and per day); the load generator's own CPU and lateness (it is the
bottleneck if it nears 100 % of a core);
and the raw insert ceiling of the same database (bench/ingest.py), rows in transactions of the
mean batch size.

Time compression: `--speed S` runs S simulated seconds per wall second (schedule, long-poll
wait, every rate); figures per agent are per simulated second. The default is 1 (real time).

Held long-polls are limited by the open-files limit (one descriptor each, in the collector
and in the generator): the table says how many were held. `--no-long-poll` runs the agents
with `jobs.enabled` off (ingest alone).

Usage: python bench/fleet.py [--db sqlite,postgresql] [--agents 1000,10000,30000]
                             [--seconds 60] [--idle-seconds 10] [--no-long-poll]
                             [--no-config-check]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import inspect
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cli.demo import responder_plan  # noqa: E402
from agent.cli.stack import Stack, tcp_open  # noqa: E402
from agent.probes import run_probe  # noqa: E402
from agent.runtime.config import (  # noqa: E402
    GATEWAY,
    CentralConfig,
    JobsConfig,
    SchedulerConfig,
    ShippingConfig,
    SpoolConfig,
    parse_config,
)
from agent.runtime.config import CollectorConfig as AgentCollectorConfig  # noqa: E402
from agent.runtime.scheduler import Plan  # noqa: E402
from agent.runtime.shipper import Shipper  # noqa: E402
from agent.runtime.spool import Spool  # noqa: E402
from agent.wire.ingest import IngestAnswer  # noqa: E402
from agent.wire.plain import new_result_id  # noqa: E402
from bench import ingest as ib  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.store import Store  # noqa: E402
from tests.collector.pg import PgCluster, free_port, pg_bin  # noqa: E402

# ------------------------------------------------------------------ 1. the mix


@dataclass
class Template:
    """One default module's result for one target, as the agent spools it."""

    module: str
    probe: str
    interval_s: float
    duration_s: float
    doc: dict[str, Any]


def record_mix(work: Path) -> list[Template]:
    """Run every periodic module of the default schedule once per target against a loopback
    responder; refuse to go on if a probe fails (a failed result has another size)."""
    args, ports = responder_plan()
    stack = Stack(work / "record")
    try:
        stack.start_responder(args, lambda: tcp_open(ports["bandwidth"]))
        site = {"responder": "127.0.0.1", "sip_server": f"sip:echo@127.0.0.1:{ports['sip']}"}
        cfg = parse_config({"site": site})
        return asyncio.run(_record(cfg.enabled_modules(), ports))
    finally:
        stack.close()


def _on_loopback(probe: str, target: str, options: dict[str, Any], ports: dict[str, int]):
    """The module's target and options pointed at the loopback responder's free ports."""
    if target == GATEWAY:
        target = "127.0.0.1"
    if probe == "udp" and target == "127.0.0.1":
        target = f"127.0.0.1:{ports['twamp']}"
    if probe == "bandwidth":
        options = {**options, "port": ports["bandwidth"]}
    return target, options


async def _record(modules: dict[str, Any], ports: dict[str, int]) -> list[Template]:
    jobs = []
    for name, mod in modules.items():
        if mod.interval_s is None:
            continue  # runs on loss only
        for t in mod.targets:
            target, options = _on_loopback(mod.probe, t, mod.options, ports)
            jobs.append((name, mod, run_probe(mod.probe, target, options, module=name)))
    out = []
    for (name, mod, _), res in zip(jobs, await asyncio.gather(*(j[2] for j in jobs)), strict=True):
        if not res.success:
            raise SystemExit(f"recording the mix: module {name} failed: {res.error}")
        out.append(
            Template(name, mod.probe, float(mod.interval_s), res.duration_ms / 1e3,
                     res.to_json_dict())
        )  # fmt: skip
    return out


# ------------------------------------------------------------------ 2. the request pattern


class _VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        real = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> Any:
            events = real(0)
            if not events and timeout:
                self._now += timeout
            return events

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._now


class _Recorder:
    """Stands in for the collector client: answers every item stored, records the request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, kinds: dict[str, int]) -> None:
        self.loop = loop
        self.kinds = kinds  # spooled result id -> template index
        self.requests: list[tuple[float, list[int]]] = []

    async def post_results(self, ids: list[str], bodies: list[bytes]) -> IngestAnswer:
        self.requests.append((self.loop.time(), [self.kinds[i] for i in ids]))
        items = [{"index": n, "id": i, "status": "stored"} for n, i in enumerate(ids)]
        doc = {"stored": len(ids), "duplicates": 0, "rejected": 0, "items": items}
        return IngestAnswer.parse(json.dumps(doc).encode(), ids)

    def set_key(self, key: str) -> None:
        pass


def shipper_for(spool: Spool, client: Any, loop: asyncio.AbstractEventLoop, rng: random.Random):
    """The real Shipper with the agent's default shipping settings (every ShippingConfig
    field the Shipper takes), on the virtual clock."""
    accepted = inspect.signature(Shipper).parameters
    kw = {k: v for k, v in msgspec.structs.asdict(ShippingConfig()).items() if k in accepted}
    return Shipper(spool, client, rng=rng, clock=loop.time, wall=lambda: 1e9 + loop.time(), **kw)


async def _simulate(
    mix: list[Template], seconds: float, seed: int
) -> list[tuple[float, list[int]]]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    sp = SpoolConfig()
    spool = Spool(":memory:", max_bytes=int(sp.max_mb * 1e6), max_age_s=sp.max_age_h * 3600)
    kinds: dict[str, int] = {}
    rec = _Recorder(loop, kinds)
    shipper = shipper_for(spool, rec, loop, rng)
    intervals = {t.module: t.interval_s for t in mix}
    plan = Plan(intervals, loop.time(), rng, first_within_s=SchedulerConfig().first_run_within_s)

    async def one(i: int, t: Template) -> None:
        await asyncio.sleep(t.duration_s)
        rid = str(uuid.UUID(int=rng.getrandbits(128)))
        kinds[rid] = i
        spool.put({**t.doc, "id": rid}, 1e9 + loop.time())  # as Agent.sink
        shipper.notify()

    async def scheduler() -> None:
        """The scheduler's plan (agent.runtime.scheduler.Plan); a module's targets run at
        once, each result spooled when its probe ends (its recorded duration)."""
        running: set[asyncio.Task[None]] = set()
        try:
            await _plan_loop(running)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _plan_loop(running: set[asyncio.Task[None]]) -> None:
        while True:
            for name in plan.due(loop.time()):
                for i, t in enumerate(mix):
                    if t.module == name:
                        task = asyncio.create_task(one(i, t))
                        running.add(task)
                        task.add_done_callback(running.discard)
            wake = plan.next_wakeup()
            await asyncio.sleep(max(0.0, (wake or loop.time() + 1) - loop.time()))

    tasks = [asyncio.create_task(shipper.run())]
    tasks.append(asyncio.create_task(scheduler()))
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    spool.close()
    return rec.requests


def request_traces(
    mix: list[Template], n: int, seconds: float
) -> list[list[tuple[float, list[int]]]]:
    """`n` agents' requests over `seconds` of virtual time, each from its own random phases."""
    traces = []
    for seed in range(n):
        loop = _VirtualLoop()
        try:
            traces.append(loop.run_until_complete(_simulate(mix, seconds, seed)))
        finally:
            loop.close()
    return traces


# ------------------------------------------------------------------ 3. the fleet


# Descriptors kept free of held long-polls, in the generator and in the collector (which
# inherits the limit): ingest connections (at most FD_HEADROOM - 512 open at once), the
# database, files.
FD_HEADROOM = 2048


def raise_nofile(need: int) -> int:
    """Raise the open-files limit towards `need` (as far as the hard limit allows, or
    beyond it when privileged); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def source_address(i: int) -> str:
    """Loopback source addresses spread the connections over many (address, port) spaces."""
    return f"127.1.{(i // 250) % 250}.{i % 250 + 1}"


async def read_answer(r: asyncio.StreamReader) -> tuple[int, bytes]:
    line = await r.readline()
    if not line:
        raise ConnectionError("closed by the collector")
    status = int(line.split()[1])
    length = 0
    while (h := await r.readline()) not in (b"\r\n", b""):
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await r.readexactly(length)


@dataclass
class Load:
    host: str
    port: int
    keys: list[str]
    wait_s: int
    timeout_s: float
    held: int  # agents holding a long-poll (the first `held`; see FD_HEADROOM)
    config_s: float = 0.0  # the config check's interval (0: no checks)
    checks: int = 0
    check_errors: int = 0
    polls: int = 0
    poll_errors: int = 0
    connected: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    lat: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    stored: int = 0  # results stored by the measured requests
    stored_all: int = 0  # ... and by the warm-up's (the database grew by both)
    all_connected: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(FD_HEADROOM - 512)
    )

    async def poll(self, i: int, start_in: float) -> None:
        """One agent's job long-poll, held for as long as the run lasts."""
        await asyncio.sleep(start_in)
        head = (
            f"GET /api/v1/agent/jobs?wait={self.wait_s} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.keys[i]}\r\n\r\n"
        ).encode()
        while True:
            w = None
            try:
                r, w = await asyncio.open_connection(
                    self.host, self.port, local_addr=(source_address(i), 0)
                )
                self.connected += 1
                if self.connected >= self.held:
                    self.all_connected.set()
                try:
                    while True:
                        w.write(head)
                        async with asyncio.timeout(self.wait_s + self.timeout_s):
                            status, _ = await read_answer(r)
                        self.polls += 1
                        if status != 200:
                            self.poll_errors += 1
                            await asyncio.sleep(1.0)
                finally:
                    self.connected -= 1
            except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.poll_errors += 1
                await asyncio.sleep(1.0)
            finally:
                if w is not None:
                    w.close()

    async def check_config(self, i: int, start_in: float, rng: random.Random) -> None:
        """One agent's central config check, every `config_s` (±10 %) for as long as the
        run lasts, each on a new connection, as the agent's `ConfigSync` makes it."""
        await asyncio.sleep(start_in)
        head = (
            f"GET /api/v1/agent/config HTTP/1.1\r\nHost: {self.host}\r\n"
            f'Authorization: Bearer {self.keys[i]}\r\nIf-None-Match: "local"\r\n'
            "Connection: close\r\n\r\n"
        ).encode()
        while True:
            await self.in_flight.acquire()
            try:
                status, _ = await self.exchange(source_address(i + 13), head)
                self.checks += 1
                self.check_errors += status != 304
            except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.check_errors += 1
            finally:
                self.in_flight.release()
            await asyncio.sleep(self.config_s * rng.uniform(0.9, 1.1))

    async def exchange(self, source: str, request: bytes) -> tuple[int, bytes]:
        """One request on a new connection from `source`, answered within the agent's
        `collector.timeout_s` (TimeoutError otherwise); the connection is closed after."""
        w = None
        try:
            async with asyncio.timeout(self.timeout_s):
                r, w = await asyncio.open_connection(self.host, self.port, local_addr=(source, 0))
                w.write(request)
                return await read_answer(r)
        finally:
            if w is not None:
                w.close()

    async def ship(self, i: int, at: float, body: bytes, measured: bool) -> None:
        """One ingest request, sent at monotonic time `at` on a new connection."""
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await self.in_flight.acquire()  # released when the connection is closed
        late = time.monotonic() - at
        if measured:  # late here when the generator ran out of connections (or of CPU)
            self.lag.append(max(0.0, late))
        if late > self.timeout_s:  # the agent would have given up waiting by now
            self.in_flight.release()
            self.timeouts += measured
            return
        head = (
            f"POST /api/v1/results HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.keys[i]}\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            status, answer = await self.exchange(source_address(i + 7), head + body)
            stored = int(json.loads(answer)["stored"]) if status == 200 else 0
            self.stored_all += stored
            if measured:
                self.lat.append(time.monotonic() - at)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.stored += stored
        except TimeoutError:
            self.timeouts += measured
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            self.errors += measured
        finally:
            self.in_flight.release()


def build_bodies(
    mix: list[Template], traces: list[list[tuple[float, list[int]]]], n: int, trace_s: float,
    window_s: float, speed: float, rng: random.Random, measured_from: float = 0.0,
) -> tuple[list[tuple[float, int, bytes]], int]:  # fmt: skip
    """(wall offset, agent, gzip body) of every request in the window, and the count of the
    results sent from `measured_from` (wall s) on. Agent `i` replays trace `i % len(traces)`
    shifted by a random phase (the trace repeats)."""
    docs = [json.dumps({**t.doc, "id": "@ID@", "started_at": "@AT@"}, separators=(",", ":"))
            for t in mix]  # fmt: skip
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    sim = window_s * speed
    out: list[tuple[float, int, bytes]] = []
    results = 0
    for i in range(n):
        trace = traces[i % len(traces)]
        shift = rng.uniform(0, trace_s)
        for base in range(0, int(sim // trace_s) + 2):
            for t, kinds in trace:
                when = (t + shift) % trace_s + base * trace_s - trace_s
                if not 0 <= when < sim:
                    continue
                items = [docs[k].replace("@ID@", str(new_result_id())).replace("@AT@", at)
                         for k in kinds]  # fmt: skip
                raw = ('{"results":[' + ",".join(items) + "]}").encode()
                out.append((when / speed, i, gzip.compress(raw, compresslevel=6)))
                results += len(kinds) if when / speed >= measured_from else 0
    out.sort(key=lambda x: x[0])
    return out, results


def db_bytes(store: Store) -> int:
    """The bytes the database holds (SQLite: pages in use, as the connection sees them, the
    write-ahead log included; PostgreSQL: pg_database_size)."""
    with store.read() as c:
        if store.is_sqlite:
            pages = c.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = c.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = c.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int((pages - free) * size)
        return int(c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())


def start_collector(db_url: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """`collector serve` on the database, pinned to CPU 0 when taskset exists (as
    bench/ingest.py), with a scrape token in `workdir/token`."""
    token = workdir / "token"
    token.write_text("bench-" + uuid.uuid4().hex)
    cfg = workdir / "collector.yml"
    cfg.write_text(
        json.dumps(
            {
                "db": db_url,
                "log_level": "warning",
                "silent_check_interval_s": 3600,
                "metrics": {"token_file": str(token)},
            }
        )
    )
    cmd = [str(Path(sys.executable).parent / "qos-scout"), "collector", "serve", "--config",
           str(cfg), "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "0", *cmd]
    log = open(workdir / "log", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"collector did not start; see {workdir / 'log'}")


class Database:
    """A fresh database: SQLite in `work`, or PostgreSQL in a private cluster."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind, self.cluster = kind, None
        if kind == "sqlite":
            self.url = f"sqlite:///{work}/collector.sqlite3"
        else:
            bindir = pg_bin()
            if bindir is None:
                raise SystemExit("PostgreSQL binaries not found")
            self.cluster = PgCluster(bindir)
            self.cluster.start()
            eng = sa.create_engine(self.cluster.url(), isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.exec_driver_sql("CREATE DATABASE bench")
            eng.dispose()
            self.url = self.cluster.url("bench")
        self.store = Store(CollectorConfig(db=self.url))
        self.store.migrate()

    def server_pids(self, collector: subprocess.Popen[bytes]) -> list[int]:
        pids = [collector.pid]
        if self.cluster is not None:
            pids.append(int((self.cluster.data / "postmaster.pid").read_text().split()[0]))
        return pids

    def close(self) -> None:
        self.store.dispose()
        if self.cluster is not None:
            self.cluster.stop()


async def drive(load: Load, plan: list[tuple[float, int, bytes]], args: argparse.Namespace,
                n: int) -> dict[str, float]:  # fmt: skip
    """Hold the polls (started over one wait), measure them idle, then the full load."""
    ramp = load.wait_s if load.held else 0
    if not load.held:
        load.all_connected.set()
    rng = random.Random(5)
    polls = [asyncio.create_task(load.poll(i, rng.uniform(0, ramp))) for i in range(load.held)]
    if load.config_s:
        polls += [
            asyncio.create_task(load.check_config(i, rng.uniform(0, load.config_s), rng))
            for i in range(len(load.keys))
        ]
    out: dict[str, float] = {}
    try:
        deadline = time.monotonic() + ramp + 30
        await asyncio.sleep(ramp)
        with contextlib.suppress(TimeoutError):  # a saturated collector: go on, say how many
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await load.all_connected.wait()
        out["connected"] = load.connected
        c0, g0, t0 = ib.cpu_now(), time.process_time(), time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        wall = time.monotonic() - t0
        out["idle_cores"] = (ib.cpu_now() - c0) / wall
        out["idle_gen"] = (time.process_time() - g0) / wall
        p0, k0 = load.polls, load.checks
        # the generator's own garbage collector: its full passes over 10,000 connections
        # and the plan's bodies stalled its loop 100-300 ms, counted as the collector's
        # latency; what exists now is frozen and the rest waits for the end of the run
        gc.collect()
        gc.freeze()
        gc.disable()
        begin = time.monotonic() + 1.0
        ships = [asyncio.create_task(load.ship(i, begin + off, body, off >= args.warmup))
                 for off, i, body in plan]  # fmt: skip
        # the warm-up: the load runs, unmeasured but for the server's CPU (a collector just
        # started: every site's first results load its rules context, every agent's key)
        c0 = ib.cpu_now()
        await asyncio.sleep(max(0.0, begin + args.warmup - time.monotonic()))
        out["warmup_cores"] = (ib.cpu_now() - c0) / args.warmup if args.warmup else float("nan")
        start = begin + args.warmup
        c0, g0 = ib.cpu_now(), time.process_time()
        polls0 = load.polls
        await asyncio.sleep(max(0.0, start + args.seconds - time.monotonic()))
        wall = time.monotonic() - start
        out["cores"] = (ib.cpu_now() - c0) / wall
        out["gen"] = (time.process_time() - g0) / wall
        out["wall"] = wall
        out["polls_per_s"] = (load.polls - polls0) / wall
        out["idle_polls_per_s"] = (polls0 - p0) / args.idle_seconds
        out["checks_per_s"] = (load.checks - k0) / (time.monotonic() - t0)
        _, late = await asyncio.wait(ships, timeout=load.timeout_s + 10)
        for task in late:  # bounded: a saturated collector must not hold the run
            task.cancel()
        load.timeouts += len(late)
        out["connected_end"] = load.connected
    finally:
        gc.enable()
        gc.unfreeze()
        for p in polls:
            p.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
    return out


def run_size(kind: str, n: int, mix: list[Template], traces: list[Any], args: argparse.Namespace,
             work: Path) -> dict[str, Any]:  # fmt: skip
    db = Database(kind, work)
    try:
        fleet = ib.setup_tenants(db.store, n)
        port = free_port()
        plan, results = build_bodies(
            mix, traces, n, args.trace_s, args.warmup + args.seconds, args.speed,
            random.Random(n), measured_from=args.warmup,
        )  # fmt: skip
        measured = [p for p in plan if p[0] >= args.warmup]
        proc = start_collector(db.url, port, work)
        ib.SERVER_PIDS[:] = db.server_pids(proc)
        wait = max(1, round(JobsConfig().wait_s / args.speed))
        held = min(n, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_HEADROOM)
        held = 0 if args.no_long_poll else held
        timeout = AgentCollectorConfig().timeout_s
        config_s = 0.0 if args.no_config_check else CentralConfig().interval_s / args.speed
        load = Load("127.0.0.1", port, fleet.keys, wait, timeout, held, config_s)
        try:
            before = db_bytes(db.store)
            got = asyncio.run(drive(load, plan, args, n))
            after = db_bytes(db.store)
        finally:
            proc.terminate()
            proc.wait(60)
        ib.SERVER_PIDS[:] = ib.SERVER_PIDS[1:]
        batch = max(1, round(results / max(1, len(measured))))
        ceiling, ceiling_cpu = ib.raw_ceiling(db.store, batch, args.ceiling_seconds)
        sim = (got["wall"] + args.warmup) * args.speed  # the growth is of both
        growth = after - before
        return {
            "db": kind,
            "agents": n,
            "held": held,
            "connected": got["connected"],
            "requests": len(measured),
            "results": results,
            "rps": len(measured) / got["wall"],
            "cores": got["cores"],
            "warmup_cores": got["warmup_cores"],
            "us_per_agent_s": got["cores"] * 1e6 / (n * args.speed),
            "idle_cores": got["idle_cores"],
            "idle_us_per_agent_s": got["idle_cores"] * 1e6 / (n * args.speed),
            "p50": ib.pct(load.lat, 50),
            "p99": ib.pct(load.lat, 99),
            "answered": len(load.lat),
            "statuses": dict(sorted(load.statuses.items())),
            "timeouts": load.timeouts,
            "errors": load.errors,
            "poll_errors": load.poll_errors,
            "polls_per_s": got["polls_per_s"],
            "checks_per_s": got["checks_per_s"],
            "check_errors": load.check_errors,
            "stored": load.stored,
            "bytes_per_result": growth / load.stored_all if load.stored_all else float("nan"),
            "gb_per_day": growth / sim * 86400 / 1e9 if sim and load.stored_all else float("nan"),
            "gen": got["gen"],
            "idle_gen": got["idle_gen"],
            "lag_p99": ib.pct(load.lag, 99),
            "batch": batch,
            "ceiling": ceiling,
            "ceiling_cpu": ceiling_cpu,
        }
    finally:
        db.close()


def describe(mix: list[Template], traces: list[Any], trace_s: float) -> None:
    per_agent_s = statistics.mean(len(t) for t in traces) / trace_s
    items = [len(k) for t in traces for _, k in t]
    sizes = {t.module: len(json.dumps(t.doc, separators=(",", ":"))) for t in mix}
    print(f"# mix (bytes per result as spooled): {sizes}")
    print(
        f"# shipper ({len(traces)} agents x {trace_s:.0f} s simulated): "
        f"{per_agent_s * 60:.2f} requests per agent-minute, "
        f"{statistics.mean(items):.2f} results per request (max {max(items)}); "
        f"long-poll wait {JobsConfig().wait_s:g} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--agents", default="1000,10000,30000", help="fleet sizes, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured wall interval")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of full load before the measured interval (0: measure a "
                         "collector's first seconds of load)")  # fmt: skip
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="long-polls only")
    ap.add_argument("--no-long-poll", action="store_true", help="agents with jobs.enabled off")
    ap.add_argument(
        "--no-config-check", action="store_true", help="agents with central.enabled off"
    )
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    ap.add_argument("--templates", type=int, default=64, help="agents simulated for the pattern")
    ap.add_argument("--trace-s", type=float, default=3600.0, help="virtual seconds simulated")
    ap.add_argument("--ceiling-seconds", type=float, default=5.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the processes started
    sizes = [int(x) for x in args.agents.split(",") if x.strip()]
    limit = raise_nofile(2 * max(sizes) + 4096)
    work = Path(tempfile.mkdtemp(prefix="qs-fleet-"))
    try:
        mix = record_mix(work)
        traces = request_traces(mix, args.templates, args.trace_s)
        pinned = "collector pinned to CPU 0" if shutil.which("taskset") else "not pinned"
        print(f"# fleet benchmark: {pinned}; {os.cpu_count()} CPUs; speed {args.speed:g}; "
              f"measured {args.seconds:g} s after {args.idle_seconds:g} s of long-polls only "
              f"and {args.warmup:g} s of full load (warm-up); "
              f"RLIMIT_NOFILE {limit}; {socket.gethostname()}")  # fmt: skip
        describe(mix, traces, args.trace_s)
        rows = []
        for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
            for n in sizes:
                sub = work / f"{kind}-{n}"
                sub.mkdir()
                row = run_size(kind, n, mix, traces, args, sub)
                rows.append(row)
                print(f"# {json.dumps(row)}", flush=True)
        report(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(rows: list[dict[str, Any]]) -> None:
    print()
    print("| db | agents | long-polls held | config checks/s (not 304) | req/s | "
          "collector cores | CPU µs per agent-s | warm-up cores | idle cores | "
          "idle µs per agent-s | p50 ms | p99 ms | timeouts / errors | bytes per result | "
          "DB GB per day | raw insert rows/s (batch) | raw rows per CPU-s | generator CPU | "
          "generator lag p99 ms |")  # fmt: skip
    print("|" + "---|" * 19)
    for r in rows:
        sat = " (saturated)" if r["gen"] > 0.9 else ""
        refused = r["errors"] + sum(v for k, v in r["statuses"].items() if k != 200)
        print(
            f"| {r['db']} | {r['agents']:,} | {r['connected']:,.0f} | "
            f"{r['checks_per_s']:.0f} ({r['check_errors']}) | {r['rps']:.0f} | "
            f"{r['cores']:.2f} | "
            f"{r['us_per_agent_s']:.1f} | {r['warmup_cores']:.2f} | {r['idle_cores']:.2f} | "
            f"{r['idle_us_per_agent_s']:.1f} | {r['p50'] * 1e3:.1f} | {r['p99'] * 1e3:.1f} | "
            f"{r['timeouts']} / {refused} | {r['bytes_per_result']:,.0f} | {r['gb_per_day']:.2f} | "
            f"{r['ceiling']:,.0f} ({r['batch']}) | {r['ceiling_cpu']:,.0f} | "
            f"{r['gen'] * 100:.0f} %{sat} | {r['lag_p99'] * 1e3:.0f} |"
        )


if __name__ == "__main__":
    main()
