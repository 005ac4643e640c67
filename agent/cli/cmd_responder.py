"""`qos-scout responder`: the far end (TWAMP-light reflector, bandwidth server), one process."""

from __future__ import annotations

import argparse
import logging


def _port(text: str) -> int | None:
    if text.lower() == "off":
        return None
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number from 0 to 65535 or 'off'")
    return int(text)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "responder",
        help="run the responder: TWAMP-light reflector and bandwidth server",
        description="Serve TWAMP-light (RFC 5357 + RFC 7750) and bandwidth tests for agents.",
    )
    p.add_argument(
        "--bind",
        default="0.0.0.0",
        help="address to listen on (default 0.0.0.0; '::' for dual stack)",
    )
    p.add_argument(
        "--twamp-port", type=_port, default=862, help="UDP port of the reflector, or 'off' (862)"
    )
    p.add_argument(
        "--bandwidth-port",
        type=_port,
        default=5201,
        help="TCP+UDP port of the bandwidth server, or 'off' (5201)",
    )
    p.add_argument(
        "--natprobe-port",
        type=_port,
        default=8620,
        help="UDP port of the NAT binding test service, or 'off' (8620)",
    )
    p.add_argument(
        "--sip-port",
        type=_port,
        default=-1,
        help="UDP+TCP port of the SIP test-call endpoint, or 'off' (5060)",
    )
    p.add_argument(
        "--sip-tls-port", type=_port, default=-1, help="SIP over TLS port, or 'off' (5061)"
    )
    p.add_argument("--sip-cert", help="TLS certificate (PEM); default: self-signed at startup")
    p.add_argument("--sip-key", help="TLS private key (PEM) for --sip-cert")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from agent.responder import ResponderConfig, serve

    logging.getLogger("agent.responder").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = ResponderConfig(args.bind, args.twamp_port, args.bandwidth_port)
    cfg.natprobe_port = args.natprobe_port
    # SIP on by default; a busy default port only warns, an explicit one must work.
    cfg.sip_optional = args.sip_port == -1 and args.sip_tls_port == -1
    cfg.sip_port = 5060 if args.sip_port == -1 else args.sip_port
    cfg.sip_tls_port = 5061 if args.sip_tls_port == -1 else args.sip_tls_port
    cfg.sip_cert, cfg.sip_key = args.sip_cert, args.sip_key
    logging.getLogger("agent.sip").setLevel(logging.INFO)

    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(cfg, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print(f"responder ready on {cfg.bind}: twamp udp/{cfg.twamp_port or 'off'}, "
                  f"bandwidth tcp+udp/{cfg.bandwidth_port or 'off'}", flush=True)  # fmt: skip
        waiter.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(main())
    except OSError as exc:
        from agent.cli.main import CliError

        raise CliError(f"responder cannot listen: {exc.strerror or exc}") from None
    return 0
