"""The `qos-scout` command line: one entry point, subcommands contributed by each area.

Only the module of the command being run is imported (a bare `qos-scout` or `--help` loads
them all to list them). The collector's commands live in the collector package; this is the
one place the agent's code reaches it, lazily, as the console script's dispatch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import CliError, ProbeError

__all__ = ["CliError", "build_parser", "main"]

# command -> module that adds it; each defines `add_commands(subparsers)` and keeps its
# top-level imports light (heavy modules load inside the command's handler).
COMMANDS: dict[str, str] = {
    "probe": "agent.cli.cmd_probe",
    "collector": "collector.cli",
    "agent": "agent.cli.cmd_agent",
    "demo": "agent.cli.cmd_demo",
    "responder": "agent.cli.cmd_responder",
    "readiness": "agent.cli.cmd_readiness",
    "sip": "agent.cli.cmd_sip",
    "call-reports": "agent.cli.cmd_callreports",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option), if known."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with `only` that one (faster, lighter)."""
    parser = _Parser(
        prog="qos-scout",
        description="Network diagnostics and QoS monitoring for voice over IP.",
    )
    parser.add_argument("--version", action="version", version=f"qos-scout {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command, module in COMMANDS.items():
        if only is None or command == only:
            if module == "collector.cli":
                from collector.cli import add_commands  # the console script's dispatch

                add_commands(sub)
            else:
                importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
