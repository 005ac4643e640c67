"""`udp` probe: a voice-like TWAMP-light stream (RFC 5357) with per-direction loss, jitter, MOS.

Test packets are paced like a codec (G.711: 50 packets/s, 172-octet payload = 160 octets of
audio + 12 of RTP header) and marked EF by default. The reply's four timestamps give RTT and
per-direction jitter; the reflector's sequence counter gives per-direction loss; the RFC
7750 DSCP/ECN octet says which DSCP arrived at the far end. Receive times are kernel
timestamps (SO_TIMESTAMPNS). The maths lives in `agent.probes.udp_analysis` (pure).
Works against our responder and any TWAMP-light reflector (see docs/probes.md for what a
stateless reflector cannot tell).

`protocol: stamp` sends STAMP test packets (RFC 8762) with an RFC 8972 SSID, a
Class-of-Service TLV (DSCP1: the DSCP asked for the reflected packet; the reflector fills
in DSCP2/ECN as received) and an Extra Padding TLV up to the packet size; `auto` sends the
same packets, which a TWAMP-light reflector reflects too (they begin like its test packets),
and reads each reply as STAMP when it echoes our SSID, else as TWAMP-light. Replies shorter
than RFC 5357's 41 octets are read for what they hold (from 36 octets: the timestamps and
both sequence numbers); the figures they cannot give are listed in `not_reported`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import threading
import time
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from agent import quality
from agent.addresses import resolve
from agent.errors import NetworkUnreachableError, PeerError
from agent.probes import ProbeContext, Target, register
from agent.probes.udp_analysis import Reflection, StreamParams, analyse
from agent.responder import sockopts
from agent.wire.lite import UdpMeasurement
from agent.wire.stamp import (
    MIN_WITH_COS,
    TLV_EXTRA_PADDING,
    TLV_HEADER_LEN,
    ClassOfService,
    StampReflectorPacket,
    StampSenderPacket,
    Tlv,
)
from agent.wire.twamp import (
    QOS_SCOUT_SIGNATURE,
    REFLECTOR_7750_LEN,
    REFLECTOR_FULL_LEN,
    ReflectorPacket,
    SenderPacket,
    TwampParseError,
    ns_to_ntp,
    ntp_to_ns,
)

RTP_HEADER = 12


class UdpOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: Annotated[int, Meta(ge=1, le=65535)] = 862  # reflector port if the target has none
    # E-model codec and pacing (G711_PLC, G711, G729A, G722, OPUS)
    codec: str = "G711_PLC"
    ptime_ms: Annotated[float, Meta(ge=5, le=200)] = 20.0  # audio per packet
    packet_rate: Annotated[float, Meta(gt=0, le=20_000)] | None = None  # default 1000/ptime
    payload_bytes: Annotated[int, Meta(ge=48, le=9000)] | None = None  # default codec + RTP
    duration_s: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    dscp: Annotated[int, Meta(ge=0, le=63)] = 46  # DSCP of test packets (46 = EF)
    wait_s: Annotated[float, Meta(ge=0.1, le=60)] = 2.0  # for late replies after the last send
    jitter_buffer_ms: Annotated[float, Meta(ge=0, le=1000)] = 60.0
    synchronized_clocks: bool = False  # trust one-way delays from timestamps
    rfc7750: Literal["auto", "on", "off"] = "auto"  # far-end DSCP octet: auto = our responder's
    # test packets: TWAMP-light (RFC 5357), STAMP (RFC 8762/8972), or auto (STAMP packets;
    # each reply read as STAMP if it echoes our SSID, else TWAMP-light)
    protocol: Literal["twamp-light", "stamp", "auto"] = "twamp-light"

    def __post_init__(self) -> None:
        try:
            self.codec = quality.get_codec(self.codec).name
        except ValueError as exc:
            raise ValueError(f"@codec: {exc}") from None

    def rate(self) -> float:
        return self.packet_rate if self.packet_rate is not None else 1000.0 / self.ptime_ms

    def size(self) -> int:
        if self.payload_bytes is not None:
            size = self.payload_bytes
        else:
            codec = quality.get_codec(self.codec)
            size = max(48, codec.payload_bytes(self.ptime_ms) + RTP_HEADER)
        if self.protocol == "twamp-light":
            return size
        # STAMP: base packet + Class-of-Service TLV, then an Extra Padding TLV (>= 4 octets)
        if size <= MIN_WITH_COS:
            return MIN_WITH_COS
        return max(size, MIN_WITH_COS + TLV_HEADER_LEN)

    def count(self) -> int:
        return max(1, round(self.duration_s * self.rate()))


def _estimate_timeout(opts: UdpOptions) -> float:
    return opts.count() / opts.rate() + opts.wait_s + 10.0


@register("udp", UdpOptions, estimate_timeout=_estimate_timeout)
async def probe_udp(target: Target, opts: UdpOptions, ctx: ProbeContext) -> UdpMeasurement:
    port = target.port or opts.port
    family, sockaddr = await resolve(target.host, port)
    n, rate, size = opts.count(), opts.rate(), opts.size()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    rx = _Receiver(sock)
    try:
        sockopts.big_rcvbuf(sock)
        sockopts.enable_rx_metadata(sock)
        sockopts.set_tos(sock, opts.dscp << 2)
        sock.setblocking(False)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            raise NetworkUnreachableError(
                f"cannot reach {sockaddr[0]} port {port}: {exc.strerror}"
            ) from None
        ssid = secrets.randbelow(0xFFFF) + 1 if opts.protocol != "twamp-light" else None
        t1s = await _send_stream(sock, n, rate, _template(size, ssid, opts.dscp), rx)
        await rx.wait_for(n, opts.wait_s)
    finally:
        sock.close()
    received = rx.packets()
    refused = rx.refused

    if ssid is None:
        refl, malformed, any_signed = _decode(received, t1s, opts)
        stamp = False
    else:
        refl, malformed, any_signed, stamp = _decode_stamp(received, t1s, ssid)
    stats = analyse(
        refl,
        StreamParams(
            sent=n, codec=opts.codec, ptime_ms=1000.0 / rate if opts.packet_rate else opts.ptime_ms,
            jitter_buffer_ms=opts.jitter_buffer_ms, synchronized_clocks=opts.synchronized_clocks,
            reflector_counts=any_signed,
        ),
    )  # fmt: skip
    m = UdpMeasurement(
        **msgspec.structs.asdict(stats),
        address=str(sockaddr[0]),
        port=port,
        codec=opts.codec,
        packet_rate=rate,
        payload_bytes=size,
        dscp_sent=opts.dscp,
        reflector_reports_dscp=any(x.far_dscpe is not None for x in refl),
        malformed_replies=malformed,
        protocol="stamp" if stamp else "twamp-light",
        ssid=ssid if stamp else None,
        not_reported=_not_reported(received, refl, stamp, any_signed),
    )
    # what the reflected packets were marked with: DSCP1 when a STAMP reflector honoured the
    # Class-of-Service TLV, the DSCP received when our TWAMP-light responder echoed it
    cos_ok = stamp and m.reflector_reports_dscp
    dscp_back = opts.dscp if cos_ok else m.out.dscp_received if any_signed else None
    m.out.dscp_sent, m.back.dscp_sent = opts.dscp, dscp_back
    if not refl:
        if refused:
            why = (" (ICMP port unreachable: nothing listens there); start `qos-scout "
                   "responder` on that host or check the port")  # fmt: skip
        elif malformed:
            what = "TWAMP-light or STAMP" if ssid is not None else "TWAMP-light"
            why = (f"; {malformed} replies came back that are not {what} reflections of this "
                   f"stream (counted in malformed_replies): check that the port is a {what} "
                   "reflector's")  # fmt: skip
        else:
            why = (f": the reflector is down or a firewall drops UDP port {port} on the way; "
                   f"check that `qos-scout responder` runs there and UDP {port} is open both "
                   "ways")  # fmt: skip
        raise PeerError(
            f"no {'STAMP or ' if ssid is not None else ''}TWAMP-light reflection came back "
            f"from {sockaddr[0]} port {port}{why}",
            measurement=m,
        )
    return m


def _template(size: int, ssid: int | None, dscp: int) -> bytearray:
    """The test packet with sequence number and timestamp 0: TWAMP-light, or STAMP when
    there is an SSID. Both begin with the sequence number and the NTP timestamp, which
    `_SEQ_TS` packs into it for each packet sent."""
    err = SenderPacket(0, 0).error_estimate
    if ssid is None:
        return bytearray(bytes(SenderPacket(0, 0, err, bytes(size - 14))))
    tlvs = [ClassOfService(dscp1=dscp).tlv()]
    if size > MIN_WITH_COS:
        tlvs.append(Tlv(TLV_EXTRA_PADDING, bytes(size - MIN_WITH_COS - TLV_HEADER_LEN)))
    return bytearray(bytes(StampSenderPacket(0, 0, err, ssid, tuple(tlvs))))


_SEQ_TS = struct.Struct("!IQ")
# the sender thread sleeps at most this long at a time, so a cancelled probe stops soon
MAX_SLEEP_S = 0.1
# how many replies may wait in the socket between two reads, at most
MAX_QUEUED = 64


class _Receiver:
    """The replies of one stream as recvmsg() returns them, read many per call.

    During the stream the sender thread reads them after its sends (the socket wakes
    nobody: a reply's kernel timestamp says when it arrived, not when it was read); after
    it, the event loop's reader does.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.raw: list[tuple[bytes, list[tuple[int, int, bytes]]]] = []
        self.refused = 0
        # one buffer for every read: a reply is copied out at its size (a 64 KiB buffer per
        # call would be malloc'd in the sender thread's own arena and grow it reply by reply)
        self._buf = memoryview(bytearray(65535))

    def drain(self) -> None:
        """Read every reply waiting in the socket."""
        recvmsg_into, append, buf = self.sock.recvmsg_into, self.raw.append, self._buf
        bufs, anc = [buf], sockopts.ANCBUF
        while True:
            try:
                n, ancdata, _flags, _addr = recvmsg_into(bufs, anc)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError:
                continue
            append((bytes(buf[:n]), ancdata))

    def every(self, size: int) -> int:
        """Sends between two reads: the replies of that many fit the receive buffer 4 times."""
        rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        return max(1, min(MAX_QUEUED, rcvbuf // (4 * (size + 1024))))

    async def wait_for(self, n: int, wait_s: float) -> None:
        """Read replies until `n` are in or `wait_s` has passed since the last send."""
        self.drain()
        if len(self.raw) >= n:
            return
        loop = asyncio.get_running_loop()
        all_back = asyncio.Event()

        def on_readable() -> None:
            self.drain()
            if len(self.raw) >= n:
                all_back.set()

        loop.add_reader(self.sock.fileno(), on_readable)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await all_back.wait()
        finally:
            loop.remove_reader(self.sock.fileno())
        self.drain()

    def packets(self) -> list[tuple[bytes, sockopts.RxMeta]]:
        return [(d, sockopts.parse_ancillary(a)) for d, a in self.raw]


async def _send_stream(
    sock: socket.socket, n: int, rate: float, packet: bytearray, rx: _Receiver
) -> list[int]:
    """Send n test packets paced at `rate`; returns each packet's send time (Unix ns).

    A thread of its own sends them (one wakeup per packet, a sleep to the next absolute
    deadline: cheaper than a turn of the event loop) and reads the replies waiting after
    every `rx.every()` sends. The loop is not woken until the last packet is sent.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[int]] = loop.create_future()
    stop = threading.Event()
    every = rx.every(len(packet))

    def settle(t1s: list[int] | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(t1s or [])

    def body() -> None:
        try:
            t1s = _paced_send(sock, n, rate, packet, rx, every, stop)
        except BaseException as exc:  # handed to the probe, raised there
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, t1s, None)

    sender = threading.Thread(target=body, name="udp-stream", daemon=True)
    sender.start()
    try:
        return await done
    finally:
        stop.set()  # cancelled: the thread ends within MAX_SLEEP_S, before the socket closes
        sender.join()


def _paced_send(
    sock: socket.socket, n: int, rate: float, packet: bytearray, rx: _Receiver, every: int,
    stop: threading.Event,
) -> list[int]:  # fmt: skip
    t1s = [0] * n
    pack, send, sleep = _SEQ_TS.pack_into, sock.send, time.sleep
    monotonic, time_ns = time.monotonic, time.time_ns
    start = monotonic()
    for i in range(n):
        delay = start + i / rate - monotonic()
        while delay > 0:
            if stop.is_set():
                return t1s
            sleep(min(delay, MAX_SLEEP_S))
            delay = start + i / rate - monotonic()
        t1 = time_ns()
        t1s[i] = t1
        pack(packet, 0, i, ns_to_ntp(t1))
        try:
            send(packet)
        except BlockingIOError:
            pass  # counted as lost
        except ConnectionRefusedError:
            # an earlier packet's ICMP port unreachable, reported (and cleared) by this send:
            # counted here, or a stream whose every error lands on a send would not know
            rx.refused += 1
        except OSError as exc:
            if exc.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
                raise NetworkUnreachableError(f"network unreachable: {exc.strerror}") from None
        if i % every == every - 1:
            rx.drain()
    return t1s


def _decode(
    received: list[tuple[bytes, sockopts.RxMeta]], t1s: list[int], opts: UdpOptions
) -> tuple[list[Reflection], int, bool]:
    out: list[Reflection] = []
    malformed = 0
    any_signed = False
    for data, meta in received:
        try:
            pkt = ReflectorPacket.parse(data)
        except TwampParseError:
            malformed += 1
            continue
        if pkt.sender_seq >= len(t1s) or ns_to_ntp(t1s[pkt.sender_seq]) != pkt.sender_timestamp:
            malformed += 1  # not an answer to a packet of this stream
            continue
        any_signed = any_signed or pkt.signed
        trust = opts.rfc7750 == "on" or (opts.rfc7750 == "auto" and pkt.signed)
        out.append(
            Reflection(
                sender_seq=pkt.sender_seq,
                reflector_seq=pkt.seq,
                t1_ns=t1s[pkt.sender_seq],
                t2_ns=ntp_to_ns(pkt.receive_timestamp),
                t3_ns=ntp_to_ns(pkt.timestamp),
                t4_ns=meta.time_ns,
                far_dscpe=pkt.sender_dscpe if trust and len(data) >= REFLECTOR_7750_LEN else None,
                near_tos=meta.tos,
                far_ttl=pkt.sender_ttl,
            )
        )
    return out, malformed, any_signed


def _decode_stamp(
    received: list[tuple[bytes, sockopts.RxMeta]], t1s: list[int], ssid: int
) -> tuple[list[Reflection], int, bool, bool]:
    """Replies to STAMP packets: reflections, malformed count, signed (ours), any STAMP."""
    out: list[Reflection] = []
    malformed = 0
    any_signed = any_stamp = False
    for data, meta in received:
        try:
            pkt: StampReflectorPacket | ReflectorPacket = StampReflectorPacket.parse(data)
        except TwampParseError:
            try:  # not STAMP (or its TLVs are broken): the TWAMP-light layout, what it holds
                pkt = ReflectorPacket.parse(data)
            except TwampParseError:
                malformed += 1
                continue
        if pkt.sender_seq >= len(t1s) or ns_to_ntp(t1s[pkt.sender_seq]) != pkt.sender_timestamp:
            malformed += 1
            continue
        far_dscpe = None
        if isinstance(pkt, StampReflectorPacket) and pkt.ssid == ssid:
            any_stamp = True
            cos = pkt.cos()
            far_dscpe = None if cos is None else cos.dscp2 << 2 | cos.ecn
            pad = next((t for t in pkt.tlvs if t.type == TLV_EXTRA_PADDING), None)
            any_signed = any_signed or (pad is not None and pad.value.startswith(
                QOS_SCOUT_SIGNATURE))  # fmt: skip
        out.append(
            Reflection(
                sender_seq=pkt.sender_seq,
                reflector_seq=pkt.seq,
                t1_ns=t1s[pkt.sender_seq],
                t2_ns=ntp_to_ns(pkt.receive_timestamp),
                t3_ns=ntp_to_ns(pkt.timestamp),
                t4_ns=meta.time_ns,
                far_dscpe=far_dscpe,
                near_tos=meta.tos,
                far_ttl=pkt.sender_ttl,
            )
        )
    return out, malformed, any_signed, any_stamp


def _not_reported(
    received: list[tuple[bytes, sockopts.RxMeta]], refl: list[Reflection], stamp: bool,
    signed: bool,
) -> list[str]:  # fmt: skip
    """What the reflections did not tell, in words (empty when they told everything)."""
    if not refl:
        return []
    out: list[str] = []
    if any(x.far_ttl is None for x in refl):
        short = min(len(d) for d, _ in received if len(d) < REFLECTOR_FULL_LEN)
        out.append(f"reflector TTL (replies of {short} octets stop before it)")
    if all(x.far_dscpe is None for x in refl):
        out.append("DSCP/ECN received at the reflector (no RFC 7750 octet or STAMP "
                   "Class-of-Service TLV)" if not stamp else "DSCP/ECN received at the "
                   "reflector (it did not fill in the Class-of-Service TLV)")  # fmt: skip
    if not signed:
        out.append("whether the reflector keeps a per-session counter (direction of loss "
                   "is inferred from its sequence numbers)")  # fmt: skip
    return out
