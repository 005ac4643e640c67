"""`qos-scout demo` (`make demo`): collector + responder + agent on loopback, end to end.

Starts a collector on SQLite in a temp dir, a responder and an agent, enrolls the agent
through the API, runs a short schedule (ping, the voice stream and a SIP call to the
responder where those probes are installed, host facts), ships the results, trips a
deliberately strict demo rule so that a ticket opens, relaxes it so the ticket resolves by
itself, runs one on-demand job, prints a summary and stops everything. No root needed.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cli.stack import Stack, StackError, free_port, free_port_both, tcp_open, wait_for
from agent.wire.voice import DIRECTIONS

DEMO_RULE = "demo_strict_rtt"


def responder_plan() -> tuple[list[str], dict[str, int]]:
    """Arguments for `qos-scout responder` on free loopback ports, and the ports by service."""
    ports = {
        "twamp": free_port(socket.SOCK_DGRAM),
        "bandwidth": free_port_both(),
        "sip": free_port_both(),
        "natprobe": free_port(socket.SOCK_DGRAM),
    }
    args = ["--bind", "127.0.0.1", "--sip-tls-port", "off"]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    return args, ports


def demo_modules(ports: dict[str, int]) -> dict[str, Any]:
    """A short schedule: ping, host facts, a G.711 voice stream and a SIP call."""
    mods: dict[str, Any] = {
        "ping": {
            "probe": "icmp",
            "targets": ["127.0.0.1"],
            "interval_s": 5,
            "options": {"count": 5, "interval_s": 0.1, "timeout_s": 1},
        },
        "host": {
            "probe": "host",
            "targets": ["local"],
            "interval_s": 20,
            "options": {"sample_s": 0.5},
        },
    }
    # the agent's address as the responder sees it
    mods["host"]["options"]["public_address_from"] = f"127.0.0.1:{ports['natprobe']}"
    mods["voice"] = {
        "probe": "udp",
        "targets": [f"127.0.0.1:{ports['twamp']}"],
        "interval_s": 15,
        "options": {"codec": "G711_PLC", "duration_s": 5, "dscp": 46},
    }
    mods["sip_call"] = {
        "probe": "sip_call",
        "targets": [f"sip:echo@127.0.0.1:{ports['sip']}"],
        "interval_s": 20,
        "options": {"duration_s": 5},
    }
    return mods


def strict_rule(limit_ms: float) -> dict[str, Any]:
    return {
        DEMO_RULE: {
            "description": f"demo: round trip above {limit_ms:g} ms (deliberately strict)",
            "probes": ["icmp", "udp"],
            "field": "rtt_ms.avg",
            "op": "above",
            "warning": limit_ms,
            "severity": "warning",
            "trip_after": 2,
            "clear_after": 2,
        }
    }


def say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(
    workdir: Path,
    *,
    keep: bool = False,
    timeout_s: float = 120.0,
    serve: bool = False,
    until_stopped: Callable[[Stack], None] | None = None,
) -> int:
    """The scenario, then a summary. With `serve`, the stack stays up after it (the portal,
    the API and the metrics answering) until `until_stopped` returns (default: Ctrl-C)."""
    stack = Stack(workdir)
    t0 = time.monotonic()

    def step(text: str) -> None:
        say(f"[{time.monotonic() - t0:5.1f}s] {text}")

    try:
        say(f"qos-scout demo; work directory {workdir}")
        url = stack.start_collector()
        step(f"collector up at {url} (SQLite)")
        token = stack.create_tenancy()
        step("partner, customer and site created; enrollment token issued")
        args, ports = responder_plan()
        stack.start_responder(args, lambda: tcp_open(ports["bandwidth"]))
        step("responder up: " + ", ".join(f"{k} {v}" for k, v in ports.items()))
        modules = demo_modules(ports)
        config = stack.write_agent_config(modules)
        stack.enroll(config, token)
        step("agent enrolled through POST /api/v1/enroll")
        stack.api(
            "PUT",
            "/api/v1/rules/overrides",
            json={"site_id": stack.site_id, "overrides": strict_rule(0.001)},
        )
        stack.start_agent(config)
        names = ", ".join(f"{n} ({m['probe']})" for n, m in modules.items())
        step(f"agent running modules: {names}")

        def opened() -> list[dict[str, Any]]:
            stack._check_alive("agent")
            return [t for t in stack.tickets() if t.get("rule_id", t.get("rule")) == DEMO_RULE]

        tickets = wait_for("the strict demo rule to open a ticket", opened, timeout_s)
        ticket_id = tickets[0]["id"]
        step(f"ticket {ticket_id} opened by rule {DEMO_RULE}")

        job = stack.api(
            "POST",
            f"/api/v1/sites/{stack.site_id}/jobs",
            json={
                "kind": "probe",
                "spec": {  # a short voice stream: needs no raw socket, unlike icmp
                    "probe": "udp",
                    "targets": [f"127.0.0.1:{ports['twamp']}"],
                    "options": {"duration_s": 2},
                },
            },
        )
        job = wait_for(
            "the on-demand job to finish",
            lambda: (
                (j := stack.api("GET", f"/api/v1/jobs/{job['id']}"))["state"] in ("done", "failed")
                and j
            ),
            60.0,
        )
        step(f"on-demand job {job['id']}: {job['state']} ({job.get('message')})")

        stack.api(
            "PUT",
            "/api/v1/rules/overrides",
            json={"site_id": stack.site_id, "overrides": strict_rule(10_000)},
        )
        wait_for(
            "the ticket to resolve by itself",
            lambda: stack.api("GET", f"/api/v1/tickets/{ticket_id}")["state"] == "resolved",
            timeout_s,
        )
        step(f"demo rule relaxed; ticket {ticket_id} resolved automatically")
        wanted = {m["probe"] for m in modules.values()}
        wait_for(
            "a result of every scheduled probe",
            lambda: wanted <= {r["probe"] for r in stack.results()},
            timeout_s,
        )
        ticket = stack.api("GET", f"/api/v1/tickets/{ticket_id}")
        agent_metrics = stack.agent_metrics()
        if serve:
            summary(stack, ticket, job, agent_metrics)
            serving(stack)
            (until_stopped or wait_for_ctrl_c)(stack)
            rc = stack.stop("agent")
            step(f"agent stopped with SIGTERM, exit status {rc}")
            return 0 if rc == 0 else 1
        rc = stack.stop("agent")
        step(f"agent stopped with SIGTERM, exit status {rc}")
        summary(stack, ticket, job, agent_metrics)
        next_steps()
        return 0 if rc == 0 else 1
    except StackError as exc:
        say(f"demo failed: {exc}")
        for name in stack.procs:
            tail = stack.log_tail(name, 8)
            if tail:
                say(f"--- last lines of {name}.log\n{tail}")
        return 1
    finally:
        stack.close()
        if keep:
            say(f"logs and databases kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def summary(stack: Stack, ticket: dict[str, Any], job: dict[str, Any], agent_metrics: str) -> None:
    results = stack.results()
    say()
    say("Results stored by the collector, per probe")
    per = Counter((r["probe"], bool(r["success"])) for r in results)
    say(f"  {'probe':<12} {'ok':>4} {'failed':>6}  latest")
    for probe in sorted({p for p, _ in per}):
        latest = max(
            (r for r in results if r["probe"] == probe), key=lambda r: str(r["started_at"])
        )
        say(f"  {probe:<12} {per[(probe, True)]:>4} {per[(probe, False)]:>6}  {_headline(latest)}")
    say()
    say(f"Ticket {ticket['id']}: {ticket.get('title') or ticket.get('rule_id')}")
    for key in ("rule_id", "severity", "state", "target", "opened_at", "resolved_at"):
        if key in ticket:
            say(f"  {key}: {ticket[key]}")
    evidence = ticket.get("evidence") or {}
    tripped = evidence.get("results") or []
    context = ", ".join(sorted(evidence.get("context") or {})) or "none"
    say(f"  evidence: {len(tripped)} results that tripped the rule; context: {context}")
    for r in tripped[:3]:
        say(f"    {r.get('probe')} {r.get('target')} at {r.get('started_at')}: {_headline(r)}")
    for ev in (ticket.get("events") or [])[:6]:
        say(f"  event {ev.get('kind')}: {ev.get('message')}")
    say()
    say(f"On-demand job {job['id']} ({job['kind']}): {job['state']}; report {job.get('report')}")
    say()
    say("Agent health (its own /metrics)")
    for line in agent_metrics.splitlines():
        if line.startswith(
            (
                "qos_scout_agent_spool_depth",
                "qos_scout_agent_ship_failures",
                "qos_scout_agent_last_ship",
            )
        ):
            say(f"  {line}")


def serving(stack: Stack) -> None:
    """Where everything answers while `demo --serve` keeps the stack up."""
    url = stack.collector_url
    say()
    say("The stack keeps running; these answer until you press Ctrl-C:")
    say(
        f"  Support portal:    {url}/ui/  (log in as {stack.admin_email}, "
        f"password {stack.admin_password})"
    )
    say(f"  API docs:          {url}/docs")
    say(f"  Partner API:       curl -H 'Authorization: Bearer {stack.partner_key}' "
        f"{url}/api/v1/sites")  # fmt: skip
    say(f"  Partner metrics:   {url}/api/v1/metrics  (same key)")
    say(f"  Collector metrics: {url}/metrics  (operator: 'Authorization: Bearer "
        f"{stack.metrics_token}')")  # fmt: skip
    say(f"  Agent metrics:     http://127.0.0.1:{stack.agent_metrics_port}/metrics")
    say(f"  Logs:              {stack.workdir}/*.log")


def next_steps() -> None:
    """What a newcomer can do after the demo (everything of the demo is stopped now)."""
    say()
    say("Everything the demo started is stopped now. Next:")
    say("  .venv/bin/qos-scout demo --serve        the same, then keep it running: the support")
    say("                                          portal, API docs and metrics to click through")
    say("  .venv/bin/qos-scout readiness --help    a readiness test against a responder")
    say("  make test                               the whole test suite")
    say("  docs/deploy.md                          a collector for real sites, agents at sites")


def wait_for_ctrl_c(stack: Stack) -> None:
    """Block until Ctrl-C (or SIGTERM), or until a process of the stack dies."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while all(stack.alive(n) for n in stack.procs):
            time.sleep(1.0)
        dead = [n for n in stack.procs if not stack.alive(n)]
        say(f"{', '.join(dead)} exited; stopping the rest")
    except KeyboardInterrupt:
        say()
        say("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _headline(r: dict[str, Any]) -> str:
    if not r.get("success"):
        err = r.get("error") or {}
        return f"failed: {err.get('message', '?')}"
    m = r.get("measurement") or {}
    parts = []
    rtt = m.get("rtt_ms")
    if isinstance(rtt, dict) and rtt.get("avg") is not None:
        parts.append(f"rtt avg {rtt['avg']:.3f} ms")
    if m.get("loss_pct") is not None:
        parts.append(f"loss {m['loss_pct']:.1f} %")
    for k in ("mos", "jitter_ms", "cpu_pct"):
        if isinstance(m.get(k), int | float):
            parts.append(f"{k} {m[k]:.2f}")
    if isinstance(m.get("public_address"), str):
        parts.append(f"public address {m['public_address']}")
    gw = m.get("gateway")
    if isinstance(gw, dict):
        parts.append(f"gateway {gw.get('address')} ({gw.get('vendor') or 'vendor unknown'})")
    for side in DIRECTIONS:
        d = m.get(side)
        if isinstance(d, dict) and isinstance(d.get("mos"), int | float):
            parts.append(f"{side} MOS {d['mos']:.2f}")
    return ", ".join(parts) or "ok"


def main(keep: bool = False, workdir: Path | None = None, serve: bool = False) -> int:
    path = workdir or Path(tempfile.mkdtemp(prefix="qos-scout-demo-"))
    return run_demo(path, keep=keep or workdir is not None, serve=serve)
