"""`qos-scout agent run|enroll|check-config`: the on-site agent's commands.

Exit codes of `agent run` (systemd: `RestartPreventExitStatus=2 3`): 0 stopped by
SIGTERM/SIGINT after a clean shutdown, 1 crashed, 2 bad config or usage, 3 not enrolled
(no or unreadable credentials), 4 the spool cannot be opened.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.runtime.config import AgentConfig

EXIT_OK, EXIT_CRASH, EXIT_CONFIG, EXIT_NOT_ENROLLED, EXIT_SPOOL = 0, 1, 2, 3, 4


def add_commands(sub: argparse._SubParsersAction) -> None:
    agent = sub.add_parser("agent", help="the on-site agent: run, enroll, check a config")
    cmds = agent.add_subparsers(dest="agent_command", metavar="COMMAND")
    cmds.required = True

    run = cmds.add_parser("run", help="run the agent until SIGTERM")
    run.add_argument(
        "--config", "-c", type=Path, help="agent config (default /etc/qos-scout/agent.yml)"
    )
    run.set_defaults(func=_run)

    enroll = cmds.add_parser("enroll", help="obtain this agent's key with a one-time token")
    enroll.add_argument("--collector", required=True, metavar="URL", help="collector base URL")
    enroll.add_argument("--token", required=True, help="one-time enrollment token")
    enroll.add_argument(
        "--config", "-c", type=Path, help="agent config naming the credentials file"
    )
    enroll.add_argument(
        "--credentials", type=Path, help="where to store the key (overrides config)"
    )
    enroll.add_argument("--force", action="store_true", help="replace existing credentials")
    enroll.set_defaults(func=_enroll)

    check = cmds.add_parser("check-config", help="validate a config file and print the schedule")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=_check)


def _load(path: Path | None, *, required: bool = False) -> tuple[AgentConfig, Path | None]:
    from agent.cli.main import CliError
    from agent.errors import ConfigError
    from agent.runtime.config import DEFAULT_CONFIG_PATH, AgentConfig, load_config

    if path is None and not required and not DEFAULT_CONFIG_PATH.exists():
        return AgentConfig(), None
    path = path or DEFAULT_CONFIG_PATH
    try:
        return load_config(path), path
    except ConfigError as exc:
        raise CliError(exc.message) from None


def _check(args: argparse.Namespace) -> int:
    cfg, _ = _load(args.file, required=True)
    print(f"{args.file}: ok")
    print(f"  collector: {cfg.collector.url or '(from the credentials file)'}")
    print(f"  credentials: {cfg.collector.credentials_file}")
    print(f"  spool: {cfg.spool.path} (max {cfg.spool.max_mb:g} MB, {cfg.spool.max_age_h:g} h)")
    for name, m in (cfg.modules or {}).items():
        if m.on_loss is not None:
            when = f"on loss > {m.on_loss.loss_pct_over:g} %"
        else:
            when = f"every {m.interval_s:g} s"
        state = "" if m.enabled else " (disabled)"
        print(f"  module {name}: {m.probe} -> {', '.join(m.targets)}, {when}{state}")
    if cfg.metrics.port:
        print(f"  metrics: http://{cfg.metrics.address}:{cfg.metrics.port}/metrics")
    from agent.probes import probe_names

    print(f"  probe kinds installed: {', '.join(probe_names())}")
    return EXIT_OK


def _enroll(args: argparse.Namespace) -> int:
    import asyncio

    from agent.cli.main import CliError
    from agent.runtime.client import CollectorError, enroll

    cfg, _ = _load(args.config)
    path: Path = args.credentials or cfg.collector.credentials_file
    if path.exists() and not args.force:
        raise CliError(f"already enrolled ({path} exists); use --force to enroll again")
    try:
        creds = asyncio.run(enroll(args.collector, args.token, timeout_s=cfg.collector.timeout_s,
                                   verify=cfg.collector.verify_tls))  # fmt: skip
    except CollectorError as exc:
        raise CliError(str(exc)) from None
    try:
        creds.save(path)
    except OSError as exc:
        raise CliError(f"cannot write credentials to {path}: {exc.strerror or exc}") from None
    print(f"enrolled as agent {creds.agent_id} of site {creds.site_id}; key stored in {path}")
    return EXIT_OK


def _lighten() -> None:
    """Keep the long-running agent's memory to what it uses (docs/benchmarks.md, Footprint):
    no OpenSSL until the first TLS connection (`agent.tls.keep_openssl_out`). (Its running
    path loads no pydantic either: the wire models it uses are the msgspec Structs of
    `agent.wire.lite`.) Before asyncio is imported."""
    from agent.tls import keep_openssl_out

    keep_openssl_out()


def _run(args: argparse.Namespace) -> int:
    _lighten()
    import asyncio
    import logging
    import signal
    import sqlite3

    from agent.runtime.client import Credentials
    from agent.runtime.loop import Agent

    if logging.getLogger().level > logging.INFO:  # the agent's own start, stop and failed
        logging.getLogger("agent").setLevel(logging.INFO)  # probes; -v adds the libraries
    cfg, _ = _load(args.config)
    try:
        creds = Credentials.load(cfg.collector.credentials_file)
    except (OSError, ValueError) as exc:
        print(f"qos-scout: not enrolled: {exc}", file=sys.stderr)
        return EXIT_NOT_ENROLLED
    try:
        agent = Agent(cfg, creds)
    except (OSError, sqlite3.Error) as exc:
        print(f"qos-scout: cannot open the spool {cfg.spool.path}: {exc}", file=sys.stderr)
        return EXIT_SPOOL

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())
    return EXIT_OK
