"""`qos-scout sip options|register|call URI`: run a SIP probe now and print the result."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    sip = sub.add_parser("sip", help="SIP tests: OPTIONS, REGISTER, a call with two-way RTP")
    kinds = sip.add_subparsers(dest="sip_command", metavar="TEST")
    kinds.required = True
    helps = {
        "options": "send OPTIONS: response code and round-trip time",
        "register": "REGISTER (with digest auth): RRD, final code, auth outcome, expiry",
        "call": "place a call with RTP both ways: SRD, SDD, loss, jitter, MOS per direction",
    }
    for name, text in helps.items():
        p = kinds.add_parser(name, help=text, description=text)
        p.add_argument("uri", metavar="URI", help="sip:user@host[:port] or host[:port]")
        p.add_argument("--user", help="user name (From, and for digest auth)")
        p.add_argument(
            "--password",
            default=os.environ.get("QOS_SCOUT_SIP_PASSWORD"),
            help="digest password (default: $QOS_SCOUT_SIP_PASSWORD)",
        )
        p.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
        p.add_argument("--insecure", action="store_true", help="TLS: skip certificate checks")
        p.add_argument(
            "--dns-server",
            metavar="HOST[:PORT]",
            help="name server for the SRV/A lookups of the SIP domain (default: the system's)",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "register":
            p.add_argument("--expires", type=int, default=300, help="seconds asked for (300)")
            p.add_argument("--keep", action="store_true", help="do not unregister afterwards")
        if name == "call":
            p.add_argument("--duration", type=float, default=10.0, help="seconds of RTP (10)")
            p.add_argument("--calls", type=int, default=1, help="concurrent calls (1)")
            p.add_argument(
                "--codec",
                action="append",
                choices=["PCMU", "PCMA", "G722", "OPUS"],
                help="offer only this codec (repeatable, in order; G722 and OPUS are "
                "scored on the wideband E-model, ITU-T G.107.1)",
            )
            p.add_argument(
                "--jitter-buffer",
                type=float,
                default=60.0,
                help="fixed jitter buffer in ms for late discards and MOS (60)",
            )
        p.set_defaults(func=_run, probe=f"sip_{name}")


def _run(args: argparse.Namespace) -> int:
    from agent.cli.output import run_and_emit

    options: dict[str, Any] = {
        "transport": args.transport,
        "tls_verify": not args.insecure,
        "user": args.user,
        "password": args.password,
        "dns_server": args.dns_server,
    }
    if args.probe == "sip_register":
        options |= {"expires_s": args.expires, "unregister": not args.keep}
    if args.probe == "sip_call":
        options |= {
            "duration_s": args.duration,
            "calls": args.calls,
            "jitter_buffer_ms": args.jitter_buffer,
        }
        if args.codec:
            options["codecs"] = args.codec
    return run_and_emit(args.probe, [args.uri], options, args.json)
