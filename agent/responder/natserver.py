"""Responder side of the NAT binding test: remember where a token came from, probe it later.

Started by the responder (`ResponderConfig.natprobe_port`). A token is remembered for
at most TOKEN_TTL_S and each token triggers at most MAX_TRIGGERS times (3 small probes
each), so the service cannot be turned into a traffic amplifier. See
`agent.wire.natpacket` for the messages.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict

from agent.wire.natpacket import ACK, BIND, BOUND, PROBE, TRIGGER, NatMessage, NatWireError

log = logging.getLogger(__name__)

TOKEN_TTL_S = 900.0
MAX_TOKENS = 4096
MAX_TRIGGERS = 3
PROBE_COPIES = 3
PROBE_SPACING_S = 0.05


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: NatProbeServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.handle(data, addr, time.monotonic())


class NatProbeServer:
    """UDP service on one port; `handle` is the whole protocol (time passed in)."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8620) -> None:
        self.host, self.port = host, port
        self.bindings: OrderedDict[bytes, tuple[tuple[str, int], float, int]] = OrderedDict()
        self.malformed = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._transport is not None
        name = self._transport.get_extra_info("sockname")
        return name[0], name[1]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port), family=family
        )
        self._transport = transport
        log.info("NAT binding test service on %s port %d (UDP)", self.host, self.address[1])

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def handle(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        try:
            msg = NatMessage.parse(data)
        except NatWireError:
            self.malformed += 1
            return
        self._expire(now)
        if msg.kind == BIND:
            self.bindings[msg.token] = (addr[:2], now, 0)
            self.bindings.move_to_end(msg.token)
            while len(self.bindings) > MAX_TOKENS:
                self.bindings.popitem(last=False)
            self._send(NatMessage(BOUND, msg.token, f"{addr[0]} {addr[1]}".encode()), addr)
        elif msg.kind == TRIGGER:
            entry = self.bindings.get(msg.token)
            if entry is None:
                self._send(NatMessage(ACK, msg.token, b"unknown"), addr)
                return
            target, born, triggers = entry
            self._send(NatMessage(ACK, msg.token, b"ok"), addr)
            if triggers >= MAX_TRIGGERS:
                return
            self.bindings[msg.token] = (target, born, triggers + 1)
            task = asyncio.get_running_loop().create_task(self._probe(msg.token, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.malformed += 1

    def _expire(self, now: float) -> None:
        while self.bindings:
            token, (_, born, _) = next(iter(self.bindings.items()))
            if now - born < TOKEN_TTL_S:
                break
            del self.bindings[token]

    async def _probe(self, token: bytes, target: tuple[str, int]) -> None:
        for i in range(PROBE_COPIES):
            if i:
                await asyncio.sleep(PROBE_SPACING_S)
            self._send(NatMessage(PROBE, token), target)

    def _send(self, msg: NatMessage, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(bytes(msg), addr)
