"""Start the responder's services in one asyncio process and stop them together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    """What `serve` needs from a service: async start and stop."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ResponderConfig:
    """Where the responder listens; a port of None turns that service off."""

    bind: str = "0.0.0.0"
    twamp_port: int | None = 862
    bandwidth_port: int | None = 5201
    natprobe_port: int | None = None  # NAT binding test (agent.responder.natserver)
    sip_port: int | None = None  # SIP UAS on UDP+TCP (agent.sip.uas)
    sip_tls_port: int | None = None  # SIP over TLS; self-signed unless sip_cert is given
    sip_cert: str | None = None
    sip_key: str | None = None
    sip_optional: bool = False  # a busy SIP port logs a warning instead of failing


async def start_services(cfg: ResponderConfig) -> list[Service]:
    """Start every configured service; on failure stop those already started and re-raise."""
    from agent.responder.bandwidth import BandwidthServer
    from agent.responder.reflector import TwampReflector

    services: list[Service] = []
    try:
        if cfg.twamp_port is not None:
            services.append(TwampReflector(cfg.bind, cfg.twamp_port))
            await services[-1].start()
        if cfg.bandwidth_port is not None:
            services.append(BandwidthServer(cfg.bind, cfg.bandwidth_port))
            await services[-1].start()
        if cfg.natprobe_port is not None:
            from agent.responder.natserver import NatProbeServer

            services.append(NatProbeServer(cfg.bind, cfg.natprobe_port))
            await services[-1].start()
        if cfg.sip_port is not None:
            from agent.sip.uas import start_sip_service

            sip = await start_sip_service(cfg)
            if sip is not None:
                services.append(sip)
    except BaseException:
        for s in reversed(services):
            await s.stop()
        raise
    return services


async def serve(cfg: ResponderConfig, ready: asyncio.Event | None = None) -> None:
    """Run the responder until cancelled (Ctrl-C, SIGTERM)."""
    services = await start_services(cfg)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        for s in reversed(services):
            await s.stop()
