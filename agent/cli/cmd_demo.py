"""`qos-scout demo`: the whole system on loopback in one command (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="run collector, responder and agent on loopback and show a ticket end to end"
    )
    demo.add_argument("--keep", action="store_true", help="keep logs and databases afterwards")
    demo.add_argument("--workdir", type=Path, help="work directory (default: a new temp dir; kept)")
    demo.add_argument("--serve", action="store_true",
                      help="keep the stack running after the demo (portal, API, metrics) "
                      "until Ctrl-C")  # fmt: skip
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from agent.cli.demo import main

    return main(keep=args.keep, workdir=args.workdir, serve=args.serve)
