"""SIP transports over asyncio: UDP, TCP and TLS (RFC 3261 §18), one class each.

A transport delivers raw messages to `on_message(data, peer, transport)`. Stream transports
frame by Content-Length and keep one connection per peer; the client side connects on the
first send. Bad bytes are counted (`parse_errors`) and dropped, never raised into the loop.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.sip.message import SipParseError, StreamFramer

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

Addr = tuple[str, int]
OnMessage = Callable[[bytes, Addr, "Transport"], None]


def local_address_towards(dest: Addr) -> str:
    """The source address the kernel picks for `dest` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(dest)
        return str(s.getsockname()[0])


class Transport:
    """Common part: name (UDP/TCP/TLS), reliability, local address and the receive hook."""

    name = ""
    reliable = False

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.local: Addr = ("0.0.0.0", 0)
        self.parse_errors = 0

    async def send(self, data: bytes, peer: Addr) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class UdpTransport(Transport, asyncio.DatagramProtocol):
    name = "UDP"

    def __init__(self, on_message: OnMessage) -> None:
        super().__init__(on_message)
        self._dgram: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(cls, on_message: OnMessage, host: str, port: int = 0) -> UdpTransport:
        loop = asyncio.get_running_loop()
        proto = cls(on_message)
        await loop.create_datagram_endpoint(lambda: proto, local_addr=(host, port))
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._dgram = transport  # type: ignore[assignment]
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if data.strip(b"\r\n") == b"":
            return  # keep-alive
        self.on_message(data, (str(addr[0]), int(addr[1])), self)

    async def send(self, data: bytes, peer: Addr) -> None:
        if self._dgram is None:
            raise ConnectionError("UDP transport is closed")
        self._dgram.sendto(data, peer)

    def close(self) -> None:
        if self._dgram is not None:
            self._dgram.close()
            self._dgram = None


class StreamTransport(Transport):
    """TCP, or TLS when `ssl_context` is given; serves and/or connects."""

    reliable = True

    def __init__(
        self,
        on_message: OnMessage,
        *,
        client_ssl: ssl.SSLContext | None = None,
        server_ssl: ssl.SSLContext | None = None,
        tls: bool = False,
    ) -> None:
        super().__init__(on_message)
        self.name = "TLS" if tls else "TCP"
        self.client_ssl = client_ssl
        self.server_ssl = server_ssl
        self._writers: dict[Addr, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._connecting: dict[Addr, asyncio.Lock] = {}

    async def listen(self, host: str, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accepted, host, port, ssl=self.server_ssl)
        self.local = self._server.sockets[0].getsockname()[:2]

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        self._writers[(str(peer[0]), int(peer[1]))] = writer
        await self._read_loop(reader, writer, (str(peer[0]), int(peer[1])))

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Addr
    ) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                try:
                    messages = framer.feed(data)
                except SipParseError as exc:
                    self.parse_errors += 1
                    log.warning("%s stream from %s cannot be framed: %s", self.name, peer, exc)
                    break
                for raw in messages:
                    self.on_message(raw, peer, self)
        except OSError as exc:  # ssl.SSLError and ConnectionError are OSErrors
            log.debug("%s connection to %s ended: %s", self.name, peer, exc)
        finally:
            self._writers.pop(peer, None)
            writer.close()

    async def connect(self, peer: Addr, server_hostname: str | None = None) -> None:
        lock = self._connecting.setdefault(peer, asyncio.Lock())
        async with lock:
            if peer in self._writers:
                return
            kwargs: dict[str, object] = {}
            if self.client_ssl is not None:
                kwargs = {"ssl": self.client_ssl, "server_hostname": server_hostname or peer[0]}
            reader, writer = await asyncio.open_connection(peer[0], peer[1], **kwargs)  # type: ignore[arg-type]
            self._writers[peer] = writer
            self.local = writer.get_extra_info("sockname")[:2]
            task = asyncio.create_task(self._read_loop(reader, writer, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def send(self, data: bytes, peer: Addr) -> None:
        if peer not in self._writers:
            await self.connect(peer)
        writer = self._writers.get(peer)
        if writer is None:
            raise ConnectionError(f"{self.name} connection to {peer[0]}:{peer[1]} is closed")
        writer.write(data)
        await writer.drain()

    def close(self) -> None:
        for w in list(self._writers.values()):
            w.close()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None


PORT_TRIES = 10  # port 0: picks of a UDP port whose TCP twin is free


async def bind_udp_and_tcp(host: str, port: int) -> tuple[UdpTransport, StreamTransport]:
    """SIP on UDP and TCP at one port number, each with a handler to be set by its endpoint.
    Port 0: the system picks a free UDP port, which TCP may hold already (another listener,
    or a connection's local port); then another pick, up to PORT_TRIES times. A port asked
    for is not swapped: its error names it. On failure nothing is left open."""
    tries = PORT_TRIES if port == 0 else 1
    while True:
        udp = await UdpTransport.bind(lambda *a: None, host, port)
        tcp = StreamTransport(lambda *a: None)
        try:
            await tcp.listen(host, udp.local[1])
            return udp, tcp
        except OSError as exc:
            udp.close()
            tries -= 1
            if exc.errno != errno.EADDRINUSE or tries == 0:
                raise
