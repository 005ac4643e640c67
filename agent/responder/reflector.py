"""TWAMP-light (RFC 5357 Appendix I, RFC 7750 DSCP/ECN) and STAMP (RFC 8762/8972) reflector.

Each sender (source address and port) gets its own reflector sequence counter starting at
0, so the reflector sequence number counts the test packets that *arrived*: the sender
derives loss toward the reflector from it (RFC 5357 §4.2.1 allows either a counter or a
copy of the sender's number; a stateless reflector that copies only allows round-trip loss).

Receive times are kernel timestamps (SO_TIMESTAMPNS); the reply carries the DSCP/ECN and TTL
the sender's packet arrived with, is as long as the sender's packet (at least 48 octets),
is marked with the DSCP it arrived with, and signs its padding with QOS_SCOUT_SIGNATURE.
Malformed datagrams are counted and dropped. One log line per finished client session.

STAMP and TWAMP-light share the port; `agent.wire.stamp.is_stamp_sender` tells them apart by
the packet (44 octets or more, MBZ octets 16-43 zero, the rest well-formed RFC 8972 TLVs).
A STAMP reply is as long as the sender's packet (RFC 8762 §4.3.1), copies the SSID and TLVs,
fills the Class-of-Service TLV with the DSCP/ECN received and is marked with its DSCP1
(RFC 8972 §4.4), and signs the Extra Padding TLV with QOS_SCOUT_SIGNATURE when there is one
(so our sender knows the reflector keeps a per-session counter). A STAMP session is keyed by
address, port and SSID, with its own counter.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field

from agent.responder import sockopts
from agent.wire.stamp import (
    StampReflectorPacket,
    StampSenderPacket,
    is_stamp_sender,
    reflect_tlvs,
)
from agent.wire.twamp import (
    QOS_SCOUT_SIGNATURE,
    REFLECTOR_7750_LEN,
    ReflectorPacket,
    SenderPacket,
    TwampParseError,
    error_estimate,
    ns_to_ntp,
)

log = logging.getLogger(__name__)

SESSION_IDLE_S = 10.0
MIN_REPLY_LEN = REFLECTOR_7750_LEN + len(QOS_SCOUT_SIGNATURE)
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """Per-sender state: the reflector's own sequence counter and a few tallies."""

    next_seq: int = 0
    packets: int = 0
    first_ns: int = 0
    last_mono: float = 0.0
    dscp: set[int] = field(default_factory=set)


class TwampReflector:
    """Reflects TWAMP-light test packets on one UDP socket; call `start()` inside a loop."""

    def __init__(self, host: str = "0.0.0.0", port: int = 862) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.sessions: dict[tuple[object, ...], Session] = {}
        self.reflected = 0
        self.reflected_stamp = 0
        self.malformed = 0
        self.send_errors = 0
        self._err = error_estimate()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        name = self.sock.getsockname()
        return name[0], name[1]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sockopts.big_rcvbuf(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sockopts.enable_rx_metadata(sock)
        sock.setblocking(False)
        sock.bind((self.host, self.port))
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_readable)
        self._reaper = asyncio.create_task(self._reap_loop())
        log.info("TWAMP-light reflector on %s port %d", *self.address[:2])

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self._reap(force=True)

    def _on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(256):  # bounded: let other services run under a flood
            try:
                data, anc, _flags, addr = sock.recvmsg(65535, sockopts.ANCBUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error queued for an earlier reply
            self.handle(data, anc, addr)

    def handle(self, data: bytes, anc: list[tuple[int, int, bytes]], addr: tuple) -> None:
        meta = sockopts.parse_ancillary(anc)
        if is_stamp_sender(data):
            self._reflect_stamp(StampSenderPacket.parse(data), meta, addr)
            return
        try:
            pkt = SenderPacket.parse(data)
        except TwampParseError:
            self.malformed += 1
            return
        sess = self._session(tuple(addr[:2]), pkt.seq, meta)
        tos = meta.tos if meta.tos is not None else 0
        sess.dscp.add(tos >> 2)
        reply = ReflectorPacket(
            seq=sess.next_seq & 0xFFFFFFFF,
            timestamp=0,
            error_estimate=self._err,
            receive_timestamp=ns_to_ntp(meta.time_ns),
            sender_seq=pkt.seq,
            sender_timestamp=pkt.timestamp,
            sender_error_estimate=pkt.error_estimate,
            sender_ttl=meta.ttl if meta.ttl is not None else 255,
            sender_dscpe=tos,
            padding=QOS_SCOUT_SIGNATURE + bytes(max(0, len(data) - MIN_REPLY_LEN)),
        )
        sess.next_seq += 1
        sess.packets += 1
        if self._send(bytes(reply), tos & 0xFC, addr):
            self.reflected += 1

    def _reflect_stamp(self, pkt: StampSenderPacket, meta: sockopts.RxMeta, addr: tuple) -> None:
        sess = self._session((*addr[:2], pkt.ssid), pkt.seq, meta)
        tos = meta.tos if meta.tos is not None else 0
        sess.dscp.add(tos >> 2)
        tlvs, dscp1 = reflect_tlvs(pkt.tlvs, tos, QOS_SCOUT_SIGNATURE)
        reply = StampReflectorPacket(
            seq=sess.next_seq & 0xFFFFFFFF,
            timestamp=0,
            error_estimate=self._err,
            ssid=pkt.ssid,
            receive_timestamp=ns_to_ntp(meta.time_ns),
            sender_seq=pkt.seq,
            sender_timestamp=pkt.timestamp,
            sender_error_estimate=pkt.error_estimate,
            sender_ttl=meta.ttl if meta.ttl is not None else 255,
            tlvs=tlvs,
        )
        sess.next_seq += 1
        sess.packets += 1
        mark = (dscp1 << 2) if dscp1 is not None else tos & 0xFC
        if self._send(bytes(reply), mark, addr):
            self.reflected_stamp += 1

    def _session(self, key: tuple[object, ...], seq: int, meta: sockopts.RxMeta) -> Session:
        """The sender's session: a new one (counter 0) after idling or a restart at seq 0."""
        now = time.monotonic()
        sess = self.sessions.get(key)
        restarted = sess is not None and seq == 0 and now - sess.last_mono > 1.0
        if sess is None or restarted or now - sess.last_mono > SESSION_IDLE_S:
            if sess is not None:
                self._log_session(key, sess)
            if len(self.sessions) >= MAX_SESSIONS:
                self._reap(force=False)
            sess = self.sessions[key] = Session(first_ns=meta.time_ns)
        sess.last_mono = now
        return sess

    def _send(self, out: bytes, tos: int, addr: tuple) -> bool:
        """Send a reply marked `tos`, T3 patched in as late as possible; False on error."""
        t3 = ns_to_ntp(time.time_ns()).to_bytes(8, "big")
        buf = out[:4] + t3 + out[12:]
        assert self.sock is not None
        try:
            self.sock.sendmsg([buf], sockopts.tos_cmsg(self.sock.family, tos, addr[0]), 0, addr)
        except OSError:
            self.send_errors += 1
            return False
        return True

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._reap(force=False)

    def _reap(self, *, force: bool) -> None:
        now = time.monotonic()
        for key, sess in list(self.sessions.items()):
            if force or now - sess.last_mono > SESSION_IDLE_S:
                del self.sessions[key]
                self._log_session(key, sess)

    def _log_session(self, key: tuple[object, ...], sess: Session) -> None:
        dscp = ",".join(str(d) for d in sorted(sess.dscp))
        kind = f"stamp (SSID {key[2]})" if len(key) > 2 else "twamp"
        log.info(
            "%s client %s port %s: %d packets reflected, DSCP received %s "
            "(malformed so far %d)",
            kind, key[0], key[1], sess.packets, dscp or "-", self.malformed,
        )  # fmt: skip
