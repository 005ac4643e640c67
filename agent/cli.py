"""The `qos-scout` command line: one entry point, subcommands contributed by each area."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import CliError, ProbeError

__all__ = ["CliError", "build_parser", "main"]

# Modules that add subcommands; each defines `add_commands(subparsers)` and keeps its
# top-level imports light (heavy modules load inside the command's handler).
COMMAND_MODULES: list[str] = [
    "agent.cli_probe",
    "collector.cli",
    "agent.cli_agent",
    "agent.cli_demo",
    "agent.cli_responder",
    "agent.cli_readiness",
    "agent.sip.cli",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qos-scout",
        description="Network diagnostics and QoS monitoring for voice over IP.",
    )
    parser.add_argument("--version", action="version", version=f"qos-scout {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        rc = args.func(args)
    except (CliError, ProbeError) as exc:
        print(f"qos-scout: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
