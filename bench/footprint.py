"""Agent footprint: resident memory and CPU of an idle agent at the default schedule, and
during a 10-call SIP test, beside a bare `python -c pass` and Prometheus blackbox_exporter
doing ICMP on the same targets.

Everything runs on loopback: a collector (SQLite) and a responder for the agent to talk to,
the agent with the default modules (ping the "gateway" and the responder every 60 s, a 30 s
G.711 voice stream every 5 min, SIP OPTIONS every 60 s, host facts every 5 min; the 8-hourly
bandwidth test is left out of an idle window), and blackbox_exporter scraped every 60 s for
the same two ping targets as Prometheus would. Figures are sampled with psutil from /proc.

    .venv/bin/python bench/footprint.py [--warmup 60] [--duration 240] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
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

from agent.cli.demo import available, responder_plan
from agent.cli.stack import Stack, free_port, tcp_open, wait_for
from agent.runtime.config import SiteConfig, default_modules

GATEWAY_STANDIN = "127.0.0.2"  # test traffic stays on loopback


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
    """RSS of an interpreter that imported nothing (sampled while it sleeps, so the figure is
    not the forked parent's image that ru_maxrss of a child would include)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    time.sleep(1.0)
    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
    proc.wait()
    return rss


def bench_modules(ports: dict[str, int]) -> dict[str, Any]:
    site = SiteConfig(
        responder="127.0.0.1",
        sip_server=f"sip:127.0.0.1:{ports['sip']}" if "sip" in ports else None,
    )
    mods = default_modules(site)
    mods.pop("bandwidth", None)
    mods["ping"]["targets"] = [GATEWAY_STANDIN, "127.0.0.1"]
    if "voice" in mods:
        mods["voice"]["targets"] = [f"127.0.0.1:{ports['twamp']}"]
    if "trace" in mods:
        mods["trace"]["targets"] = ["127.0.0.1"]
    if "sip" in mods:
        mods["sip"]["targets"] = [site.sip_server]
    return {k: m for k, m in mods.items() if available(m["probe"])}


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
    ap.add_argument("--calls", type=int, default=10, help="concurrent calls in the SIP test (10)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

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
        runs = len(stack.results())
        notes.append(f"results stored by the collector from the first agent so far: {runs}")
        if "sip" in ports:
            with Sampler(agent.pid, every_s=0.2) as s:
                job = sip_load(stack, ports["sip"], args.calls)
            rows.append(s.row(f"agent during a {args.calls}-call SIP test (20 s of RTP)"))
            notes.append(f"SIP test job: {job['state']} {job.get('message') or ''}".strip())
        else:
            notes.append("no SIP endpoint on the responder or no sip_call probe: SIP test not run")
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
    for n in notes:
        print(f"- {n}")
    print(
        f"- machine: {os.cpu_count()} cores, Python {sys.version.split()[0]},"
        f" {psutil.virtual_memory().total / 2**30:.1f} GiB RAM"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
