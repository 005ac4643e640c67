"""`qos-scout readiness`: the VoIP readiness test, standalone (no collector needed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "readiness",
        help="run the VoIP readiness test against a responder (and a SIP server)",
        description="Bandwidth, voice stream, concurrent-call capacity, DSCP, NAT binding "
        "timeout, SIP and path checks, graded pass/warn/fail with the usual fixes.",
    )
    p.add_argument("--responder", required=True, help="responder host (qos-scout responder)")
    p.add_argument("--sip-server", help="SIP server URI or host, e.g. sip:pbx.example.com")
    p.add_argument("--sip-transport", choices=["udp", "tcp", "tls"], default="udp")
    p.add_argument("--sip-user", help="SIP user for REGISTER (with --sip-password)")
    p.add_argument("--sip-password", help="SIP password (prefer the QOS_SCOUT_SIP_PASSWORD env)")
    p.add_argument("--sip-call", dest="sip_call_uri", help="URI to place a test call to")
    p.add_argument("--calls", type=int, default=10, help="simultaneous calls the site needs (10)")
    p.add_argument("--max-calls", type=int, help="ramp ceiling (default: twice --calls)")
    p.add_argument("--down-mbps", type=float, dest="contracted_down_mbps",
                   help="contracted download speed, Mbit/s")  # fmt: skip
    p.add_argument("--up-mbps", type=float, dest="contracted_up_mbps",
                   help="contracted upload speed, Mbit/s")  # fmt: skip
    p.add_argument("--voice-s", type=float, default=10.0, help="voice stream seconds (10)")
    p.add_argument("--ramp-step-s", type=float, default=5.0, help="seconds per ramp step (5)")
    p.add_argument("--bandwidth-s", type=float, default=5.0, help="bandwidth seconds each way")
    p.add_argument("--nat-intervals", default="15,30,60",
                   help="idle seconds to test the NAT binding with (15,30,60)")  # fmt: skip
    p.add_argument("--checks", help="comma-separated groups to run (default: all)")
    p.add_argument("--twamp-port", type=int, default=862)
    p.add_argument("--bandwidth-port", type=int, default=5201)
    p.add_argument("--natprobe-port", type=int, default=8620)
    p.add_argument("--responder-sip", help="the responder's SIP URI (default sip:HOST:5060)")
    p.add_argument("--info", action="append", default=[], metavar="KEY=VALUE",
                   help="call info: user, caller_number, callee_number, call_time, firewall, "
                   "circuit_speed, notes (repeatable)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="write the JSON report to FILE (stdout if no FILE)")  # fmt: skip
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write the HTML report to FILE (with --json, both are written)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_run)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The suite options dict for these arguments (validated later by ReadinessOptions)."""
    import os

    from agent.cli.main import CliError

    try:
        intervals = [float(x) for x in args.nat_intervals.split(",") if x.strip()]
    except ValueError:
        raise CliError(
            f"--nat-intervals {args.nat_intervals!r}: expected numbers like 15,30"
        ) from None
    info: dict[str, str] = {}
    for item in args.info:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--info {item!r}: expected KEY=VALUE")
        info[key.strip()] = value.strip()
    opts: dict[str, Any] = {
        "responder": args.responder, "twamp_port": args.twamp_port,
        "bandwidth_port": args.bandwidth_port, "natprobe_port": args.natprobe_port,
        "responder_sip": args.responder_sip,
        "sip_server": args.sip_server, "sip_transport": args.sip_transport,
        "sip_user": args.sip_user,
        "sip_password": args.sip_password or os.environ.get("QOS_SCOUT_SIP_PASSWORD"),
        "sip_call_uri": args.sip_call_uri, "calls": args.calls, "max_calls": args.max_calls,
        "contracted_down_mbps": args.contracted_down_mbps,
        "contracted_up_mbps": args.contracted_up_mbps, "voice_s": args.voice_s,
        "ramp_step_s": args.ramp_step_s, "bandwidth_s": args.bandwidth_s,
        "nat_intervals_s": intervals, "call_info": info,
    }  # fmt: skip
    if args.checks:
        opts["checks"] = [c.strip() for c in args.checks.split(",") if c.strip()]
    return opts


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from agent.cli.main import CliError
    from agent.readiness.suite import run_readiness
    from agent.wire import report
    from agent.wire.errors import format_validation_error
    from agent.wire.readiness import ReadinessOptions

    try:
        opts = ReadinessOptions.model_validate(options_from_args(args))
    except ValidationError as exc:
        raise CliError(f"readiness options: {format_validation_error(exc)}") from None

    async def progress(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction * 100:3.0f} %] {message}", file=sys.stderr, flush=True)

    rep = asyncio.run(run_readiness(opts, progress=progress))
    if args.json:
        text = report.to_json(rep)
        if args.json == "-":
            print(text)
        else:
            _write(args.json, text)
    if args.html:
        _write(args.html, report.to_html(rep))
    if not (args.json == "-"):
        print(summary(rep))
    return 1 if rep.verdict == "fail" else 0


def _write(path: str, text: str) -> None:
    from agent.cli.main import CliError

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def summary(rep: Any) -> str:
    """A plain-text verdict and one line per check."""
    lines = [f"VoIP readiness: {rep.verdict.upper()}  (responder {rep.responder}, "
             f"{rep.duration_s:.0f} s)"]  # fmt: skip
    for c in rep.checks:
        lines.append(f"  {c.status.upper():8} {c.name}: {c.display}"
                     + (f"  [{c.threshold}]" if c.threshold else ""))  # fmt: skip
        if c.status in ("fail", "warn"):
            lines.append(f"           why: {c.explanation}")
            lines.append(f"           fix: {c.fix}")
    return "\n".join(lines)
