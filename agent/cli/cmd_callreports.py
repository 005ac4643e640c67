"""`qos-scout call-reports`: listen for phones' RFC 6035 call reports (SIP PUBLISH) by hand
and print each as the `call_report` result the agent would store (to point a phone at it)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "call-reports",
        help="print the RFC 6035 call reports phones send (SIP PUBLISH vq-rtcpxr)",
        description="Listen on a SIP port (UDP and TCP) for PUBLISH application/vq-rtcpxr "
        "and print each report taken as a call_report result. The agent does the same "
        "when its config has a call_reports section, and ships the results.",
    )
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    p.add_argument("--port", type=int, default=5060, help="SIP port, UDP and TCP (5060)")
    p.add_argument(
        "--phone",
        action="append",
        default=[],
        metavar="NAME=ADDRESS|ACCOUNT",
        help="a phone to take reports from: an address or network (office=10.1.2.0/24) or "
        "an account (alice=sip:1001@pbx.example.com); repeat for more",
    )
    p.add_argument("--count", type=int, default=0, help="stop after this many reports (0: never)")
    p.add_argument("--json", action="store_true", help="one JSON result per line")
    p.set_defaults(func=_run)


def _phones(specs: list[str]) -> list[dict[str, str]]:
    from agent.cli.main import CliError

    out = []
    for spec in specs:
        name, eq, key = spec.partition("=")
        if not eq or not name or not key:
            raise CliError(f"--phone {spec!r}: expected NAME=ADDRESS or NAME=sip:ACCOUNT")
        kind = "account" if key.lower().startswith(("sip:", "sips:")) else "address"
        out.append({"name": name, kind: key})
    if not out:
        raise CliError("name at least one --phone to take reports from")
    return out


_FIGURES = (("loss", "loss_pct", " %"), ("jitter", "jitter_ms", " ms"), ("MOS", "mos", ""))


def _line(result: dict, as_json: bool) -> str:
    import json

    if as_json:
        return json.dumps(result)
    m = result["measurement"]
    parts = [f"{result['module']} {result['target']} {m['report']} report, call {m['call_id']}"]
    for d in ("out", "back"):
        v = m.get(d)
        if v:
            shown = [f"{name} {v[key]}{unit}" for name, key, unit in _FIGURES
                     if v[key] is not None]  # fmt: skip
            parts.append(f"{d}: " + (", ".join(shown) or "no figures"))
    return "; ".join(parts + m.get("reading", []))


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from agent.cli.main import CliError
    from agent.runtime.callreports import CallReportListener
    from agent.runtime.config import CallReportsConfig, section
    from agent.wire.lite import ProbeResult
    from agent.wire.structs import StructError

    try:
        cfg = section(
            {"port": args.port, "address": args.bind, "phones": _phones(args.phone)},
            CallReportsConfig,
        )
    except StructError as exc:
        raise CliError(str(exc)) from None

    async def main() -> None:
        done = asyncio.Event()
        seen = 0

        def sink(result: ProbeResult) -> None:
            nonlocal seen
            seen += 1
            print(_line(result.to_json_dict(), args.json), flush=True)
            if args.count and seen >= args.count:
                done.set()

        listener = CallReportListener(cfg, sink)
        await listener.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        if not args.json:
            print(f"listening for call reports on {args.bind} port {listener.port} (UDP/TCP)",
                  flush=True)  # fmt: skip
        try:
            await done.wait()
        finally:
            await listener.stop()

    try:
        asyncio.run(main())
    except OSError as exc:
        raise CliError(f"call-reports cannot listen: {exc.strerror or exc}") from None
    return 0
