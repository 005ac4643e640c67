"""Agent footprint: resident memory and CPU of an idle agent at the default schedule, and
during a 10-call SIP test, beside a bare `python -c pass` and (when installed) Prometheus
blackbox_exporter doing ICMP on the same targets; and where the idle agent's memory goes,
by the package whose first import grew it.

Everything runs on loopback: a collector (SQLite) and a responder for the agent to talk to,
the agent with the default modules (ping the "gateway" and the responder every 60 s, a 30 s
G.711 voice stream every 5 min, SIP OPTIONS every 60 s, host facts every 5 min; the 8-hourly
bandwidth test is left out of an idle window), and blackbox_exporter scraped every 60 s for
the same two ping targets as Prometheus would. Figures are sampled with psutil from /proc.
A third agent with the same schedule runs under an import ledger (`IMPORT_LEDGER`) for the
per-package attribution, so the measured agents carry no instrumentation.

    .venv/bin/python bench/footprint.py [--warmup 60] [--duration 240] [--calls 10] [--runs 3]

With `--runs N` the whole measurement runs N times (a fresh stack each time) and the table
gives each figure's median over the runs with the range beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.cli.demo import responder_plan
from agent.cli.stack import Stack, free_port, tcp_open, wait_for
from agent.runtime.config import SiteConfig, default_modules

GATEWAY_STANDIN = "127.0.0.2"  # test traffic stays on loopback

# `python -c IMPORT_LEDGER LEDGER_FILE qos-scout-args...`: the agent, with importlib's
# `_find_and_load` (every first import, from `import` statements and import_module alike)
# wrapped to charge the RSS growth during each import to the top-level package imported,
# minus what nested imports of other packages grew (charged to those). SIGUSR1 writes
# "package<TAB>bytes" lines, plus the RSS at start and now, to LEDGER_FILE. Only builtin
# modules are used here, so the ledger itself imports nothing the agent would be charged for.
IMPORT_LEDGER = r"""
import importlib._bootstrap as _bootstrap, os as _os, sys as _sys, _signal, _thread
_out = _sys.argv.pop(1)
_page = _os.sysconf("SC_PAGE_SIZE")
def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _page
_cost, _stacks, _find = {}, {}, _bootstrap._find_and_load
def _charged(name, import_):
    top = name.partition(".")[0]
    stack = _stacks.setdefault(_thread.get_ident(), [])
    if stack and stack[-1][0] == top:
        return _find(name, import_)
    frame = [top, _rss(), 0]
    stack.append(frame)
    try:
        return _find(name, import_)
    finally:
        stack.pop()
        grew = _rss() - frame[1]
        if top in _sys.modules:
            _cost[top] = _cost.get(top, 0) + grew - frame[2]
        else:  # a failed import (copy's `org.python.core`): its growth stays with the importer
            grew = frame[2]
        if stack:
            stack[-1][2] += grew
def _dump(*_):
    with open(_out + ".part", "w") as f:
        f.write(f"(start)\t{_start}\n(now)\t{_rss()}\n")
        f.writelines(f"{k}\t{v}\n" for k, v in _cost.items())
    _os.replace(_out + ".part", _out)
_start = _rss()
_bootstrap._find_and_load = _charged
_signal.signal(_signal.SIGUSR1, _dump)
from agent.cli.main import main
_sys.exit(main())
"""


class Sampler:
    """RSS every `every_s` and CPU time over the window, for one process."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        t = self.proc.cpu_times()
        self.cpu0, self.t0 = t.user + t.system, time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.rss.append(self.proc.memory_info().rss)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        t = self.proc.cpu_times()
        self.cpu_s = t.user + t.system - self.cpu0
        self.wall_s = time.monotonic() - self.t0

    def row(self, name: str) -> dict[str, Any]:
        mib = [r / 2**20 for r in self.rss] or [self.proc.memory_info().rss / 2**20]
        return {
            "name": name,
            "rss_median_mib": statistics.median(mib),
            "rss_max_mib": max(mib),
            "cpu_pct": 100.0 * self.cpu_s / self.wall_s,
            "window_s": self.wall_s,
        }


def bare_python_rss_mib() -> float:
    """RSS of an interpreter that imports nothing, as `python -c pass` (sampled while it waits
    on stdin, so the figure is not the forked parent's image that ru_maxrss of a child would
    include; `sys` is built in)."""
    code = "import sys; sys.stdout.write('up\\n'); sys.stdout.flush(); sys.stdin.readline()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.readline()
    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    proc.communicate("\n", timeout=10)
    return rss


def start_ledger_agent(stack: Stack, config: Path, ledger: Path) -> subprocess.Popen[bytes]:
    """An agent under IMPORT_LEDGER, stopped with the stack."""
    args = ["-v", "agent", "run", "--config", str(config)]
    log = open(stack.workdir / "agent-ledger.log", "ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", IMPORT_LEDGER, str(ledger), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    log.close()
    stack.procs["agent-ledger"] = proc
    return proc


def read_ledger(proc: subprocess.Popen[bytes], ledger: Path) -> dict[str, int]:
    """Ask the ledger agent for its figures (SIGUSR1) and read them."""
    ledger.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    wait_for("the import ledger", ledger.exists, 30)
    rows = (line.split("\t") for line in ledger.read_text().splitlines())
    return {name: int(value) for name, value in rows}


def ledger_rows(ledger: dict[str, int], min_mib: float = 0.2) -> list[tuple[str, float]]:
    """(what, MiB) rows: the interpreter at start, each package with at least `min_mib`
    (largest first), the smaller ones together, and the RSS no import accounts for."""
    start, now = ledger.pop("(start)") / 2**20, ledger.pop("(now)") / 2**20
    stdlib = sys.stdlib_module_names
    mib: dict[str, float] = {}
    for name, grew in ledger.items():
        # a C accelerator goes with its module: _ssl with ssl, _sqlite3 with sqlite3
        if name.startswith("_sysconfigdata"):
            name = "sysconfig"
        elif name.startswith("_") and name[1:] in stdlib:
            name = name[1:]
        mib[name] = mib.get(name, 0.0) + grew / 2**20

    def label(pkg: str) -> str:
        if pkg in ("agent", "collector"):
            return f"{pkg} (this project)"
        return f"{pkg} (stdlib)" if pkg in stdlib else pkg

    big = sorted(((k, v) for k, v in mib.items() if v >= min_mib), key=lambda kv: -kv[1])
    rows = [("interpreter at start (before the agent's first import)", start)]
    rows += [(label(k), v) for k, v in big]
    small = {k: v for k, v in mib.items() if v < min_mib}
    std = [v for k, v in small.items() if k in stdlib]
    rows.append((f"{len(std)} other stdlib modules, under {min_mib:g} MiB each", sum(std)))
    third = sorted(k for k in small if k not in stdlib)
    rows.append((f"other third-party: {', '.join(third) or 'none'}", sum(small[k] for k in third)))
    rest = now - start - sum(mib.values())
    rows.append(("not from imports: heap and data since (malloc_trim returns some)", rest))
    rows.append(("total: the ledger agent's RSS", now))
    return rows


def bench_modules(ports: dict[str, int]) -> dict[str, Any]:
    site = SiteConfig(responder="127.0.0.1", sip_server=f"sip:127.0.0.1:{ports['sip']}")
    mods = default_modules(site)
    mods.pop("bandwidth", None)
    mods["ping"]["targets"] = [GATEWAY_STANDIN, "127.0.0.1"]
    mods["voice"]["targets"] = [f"127.0.0.1:{ports['twamp']}"]
    mods["trace"]["targets"] = ["127.0.0.1"]
    mods["sip"]["targets"] = [site.sip_server]
    return mods


def start_blackbox(workdir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    exe = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
    if exe is None:
        return None
    cfg = workdir / "blackbox.yml"
    cfg.write_text(
        "modules:\n  icmp:\n    prober: icmp\n    timeout: 5s\n"
        "    icmp:\n      preferred_ip_protocol: ip4\n"
    )
    port = free_port()
    log = open(workdir / "blackbox.log", "ab")
    proc = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=log,
    )
    wait_for(
        "blackbox_exporter",
        lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200,
        30,
    )
    return proc, port


def scrape_blackbox(port: int, stop: threading.Event, every_s: float = 60.0) -> None:
    """Probe both targets every `every_s`, the way Prometheus would scrape them."""
    while True:
        for target in (GATEWAY_STANDIN, "127.0.0.1"):
            try:
                httpx.get(
                    f"http://127.0.0.1:{port}/probe",
                    params={"module": "icmp", "target": target},
                    timeout=10,
                )
            except httpx.HTTPError:
                pass
        if stop.wait(every_s):
            return


def sip_load(stack: Stack, port: int, calls: int) -> dict[str, Any]:
    """A `calls`-call SIP test as an on-demand job; returns the job when it finished."""
    spec = {
        "probe": "sip_call",
        "targets": [f"sip:echo@127.0.0.1:{port}"],
        "options": {"calls": calls, "duration_s": 20},
    }
    job = stack.api(
        "POST", f"/api/v1/sites/{stack.site_id}/jobs", json={"kind": "probe", "spec": spec}
    )

    def done() -> dict[str, Any] | None:
        j = stack.api("GET", f"/api/v1/jobs/{job['id']}")
        return j if j["state"] in ("done", "failed") else None

    return wait_for("the SIP test", done, 180, every_s=0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring (60)")
    ap.add_argument("--duration", type=float, default=240.0, help="idle window, seconds (240)")
    ap.add_argument("--calls", type=int, default=10, help="calls in the SIP test (10; 0: none)")
    ap.add_argument("--runs", type=int, default=1, help="runs; figures are their median (1)")
    ap.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="MODULE",
        help="leave a module of the schedule out (e.g. voice: what the rest costs)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        if args.runs > 1:
            print(f"--- run {i + 1} of {args.runs}", flush=True)
        runs.append(one_run(args))
    if args.runs > 1:
        print_median(runs)
    return 0


def _span(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.2f} ({min(values):.2f}-{max(values):.2f})"


def print_median(runs: list[tuple[list[dict[str, Any]], list[tuple[str, float]]]]) -> None:
    """Each row's figures as the median over the runs, with their range."""
    print()
    print(f"median of {len(runs)} runs (range):")
    print(f"{'process':<52} {'RSS median MiB':>20} {'RSS max MiB':>20} {'CPU % of a core':>20}")
    for i, first in enumerate(runs[0][0]):
        cols = []
        for key in ("rss_median_mib", "rss_max_mib", "cpu_pct"):
            vals = [r[0][i][key] for r in runs if i < len(r[0]) and r[0][i][key] is not None]
            cols.append(_span(vals) if vals else "")
        print(f"{first['name']:<52} {cols[0]:>20} {cols[1]:>20} {cols[2]:>20}")
    print("idle agent RSS by what it imported, median of the runs (MiB):")
    names = [what for what, _ in runs[0][1]]
    for what in names:
        vals = [dict(r[1]).get(what) for r in runs]
        got = [v for v in vals if v is not None]
        print(f"  {what:<66} {_span(got) if len(got) == len(runs) else '(not in every run)'}")


def one_run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    workdir = Path(tempfile.mkdtemp(prefix="qos-scout-footprint-"))
    stack = Stack(workdir)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    blackbox = None
    try:
        stack.start_collector()
        token = stack.create_tenancy()
        rargs, ports = responder_plan()
        stack.start_responder(rargs, lambda: tcp_open(ports["bandwidth"]))
        modules = bench_modules(ports)
        for name in args.without:
            modules.pop(name, None)
        common: dict[str, Any] = {
            "shipping": {"interval_s": 5, "backoff_initial_s": 1, "backoff_max_s": 300},
            "jobs": {"wait_s": 30},
            "scheduler": {"first_run_within_s": min(args.warmup, 60.0)},
        }
        # The default config (no local /metrics), and a second agent at a second site with
        # /metrics on, measured side by side.
        config = stack.write_agent_config(modules, metrics=None, **common)
        stack.enroll(config, token)
        agent = stack.start_agent(config)
        site2 = stack.api(
            "POST", "/api/v1/sites", json={"customer_id": stack.customer_id, "name": "site-2"}
        )["id"]
        token2 = stack.api("POST", f"/api/v1/sites/{site2}/tokens", json={})["token"]
        config2 = stack.write_agent_config(modules, name="agent-metrics", **common)
        stack.enroll(config2, token2)
        agent2 = stack.start_agent(config2, name="agent-metrics")
        site3 = stack.api(
            "POST", "/api/v1/sites", json={"customer_id": stack.customer_id, "name": "site-3"}
        )["id"]
        token3 = stack.api("POST", f"/api/v1/sites/{site3}/tokens", json={})["token"]
        config3 = stack.write_agent_config(modules, name="agent-ledger", metrics=None, **common)
        stack.enroll(config3, token3)
        ledger_file = workdir / "import-ledger.tsv"
        agent3 = start_ledger_agent(stack, config3, ledger_file)
        blackbox = start_blackbox(workdir)
        stop = threading.Event()
        if blackbox is not None:
            threading.Thread(target=scrape_blackbox, args=(blackbox[1], stop), daemon=True).start()
        else:
            notes.append(
                "blackbox_exporter is not installed (Debian prometheus-blackbox-exporter):"
                " not measured"
            )
        names = ", ".join(f"{n} ({m['probe']})" for n, m in modules.items())
        print(f"agent modules: {names}", flush=True)
        print(f"warming up {args.warmup:g} s, then measuring {args.duration:g} s ...", flush=True)
        time.sleep(args.warmup)
        samplers = {
            "agent, idle, default schedule": Sampler(agent.pid),
            "agent, idle, default schedule + local /metrics": Sampler(agent2.pid),
        }
        if blackbox is not None:
            samplers["blackbox_exporter (ICMP, 2 targets / 60 s)"] = Sampler(blackbox[0].pid)
        for s in samplers.values():
            s.__enter__()
        time.sleep(args.duration)
        for name, s in samplers.items():
            s.__exit__()
            rows.append(s.row(name))
        stop.set()
        ledger = ledger_rows(read_ledger(agent3, ledger_file))
        stack.stop("agent-ledger")
        runs = len(stack.results())
        notes.append(f"results stored by the collector from the first agent so far: {runs}")
        if args.calls > 0:
            with Sampler(agent.pid, every_s=0.2) as s:
                job = sip_load(stack, ports["sip"], args.calls)
            rows.append(s.row(f"agent during a {args.calls}-call SIP test (20 s of RTP)"))
            notes.append(f"SIP test job: {job['state']} {job.get('message') or ''}".strip())
        rows.append(
            {
                "name": "bare python (python -c pass, imports nothing)",
                "rss_median_mib": bare_python_rss_mib(),
                "rss_max_mib": None,
                "cpu_pct": None,
                "window_s": None,
            }
        )
    finally:
        if blackbox is not None:
            blackbox[0].terminate()
            blackbox[0].wait(10)
        stack.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'process':<52} {'RSS median MiB':>14} {'RSS max MiB':>11} {'CPU % of a core':>15}")
    for r in rows:
        mx = "" if r["rss_max_mib"] is None else f"{r['rss_max_mib']:.1f}"
        cpu = "" if r["cpu_pct"] is None else f"{r['cpu_pct']:.2f}"
        print(f"{r['name']:<52} {r['rss_median_mib']:>14.1f} {mx:>11} {cpu:>15}")
    print()
    print("idle agent RSS by what it imported (a third agent, same schedule, import ledger):")
    for what, mib in ledger:
        print(f"  {what:<66} {mib:>6.1f} MiB")
    print()
    for n in notes:
        print(f"- {n}")
    print(
        f"- machine: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    )
    return rows, ledger


if __name__ == "__main__":
    sys.exit(main())
