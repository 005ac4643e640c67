"""`qos-scout probe KIND ...`: run one probe now and print its results."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from agent.cli.output import fmt, run_and_emit
from agent.wire.lite import ProbeResult

# Modules adding `probe` subcommands: each defines `add_probe_commands(probe_subparsers)`.
PROBE_COMMAND_MODULES: list[str] = ["agent.cli.cmd_probe_net"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    probe = sub.add_parser("probe", help="run a probe now and print its results")
    kinds = probe.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True

    icmp = kinds.add_parser("icmp", help="ICMP echo: RTT, loss, jitter")
    icmp.add_argument("hosts", nargs="+", metavar="HOST")
    icmp.add_argument("--count", "-c", type=int, default=10, help="echo requests (default 10)")
    icmp.add_argument(
        "--interval", "-i", type=float, default=0.2, help="seconds between requests (0.2)"
    )
    icmp.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    icmp.add_argument("--size", type=int, default=56, help="payload bytes (56)")
    icmp.add_argument("--dscp", type=int, default=0, help="DSCP to mark requests with (0-63)")
    icmp.add_argument("--concurrency", type=int, default=8, help="targets probed at once")
    icmp.add_argument("--json", action="store_true", help="one JSON result per line")
    icmp.set_defaults(func=_icmp)

    for name in PROBE_COMMAND_MODULES:
        importlib.import_module(name).add_probe_commands(kinds)


def _icmp_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "address", "sent", "recv", "loss %", "min", "avg", "median", "p95"]
    headers += ["max", "jitter ms"]
    rows = []
    for r in results:
        m = r.measurement or {}
        rtt = m.get("rtt_ms") or {}
        rows.append(
            [
                r.target,
                fmt(m.get("address")),
                fmt(m.get("sent")),
                fmt(m.get("received")),
                fmt(m.get("loss_pct"), 1),
                *(fmt(rtt.get(k), 3) for k in ("min", "avg", "median", "p95", "max")),
                fmt(m.get("jitter_ms"), 3),
            ]
        )
    return headers, rows


def _icmp(args: argparse.Namespace) -> int:
    options = {
        "count": args.count,
        "interval_s": args.interval,
        "timeout_s": args.timeout,
        "payload_size": args.size,
        "dscp": args.dscp,
    }
    return run_and_emit(
        "icmp", args.hosts, options, args.json, _icmp_table, concurrency=max(1, args.concurrency)
    )
