"""An RTP/RTCP session for one call: paced sender (G.711, G.722, Opus), receiver
statistics, RTCP SR/RR.

Packets are built and parsed by `agent.sip.rtp` (as aiortc's classes do, without loading
aiortc); the audio is a tone encoded once: G.711 by `agent.sip.rtp`, G.722 and Opus by
PyAV's encoders (imported lazily, only for those codecs).
Sending runs on the shared `Pacer` thread; receiving and RTCP run on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from agent import quality
from agent.sip import rtp
from agent.sip.pacer import Pacer
from agent.sip.rtpstats import StreamRecord, ntp_timestamp, rtt_from_report
from agent.sip.sdp import OPUS_FRAME_MS

log = logging.getLogger(__name__)

Addr = tuple[str, int]
# Where RTP is paced: "process" (agent.sip.sender, own interpreter; the default) or
# "thread" (agent.sip.pacer, inside this process).
PACER = os.environ.get("QOS_SCOUT_PACER", "process")
CODEC_NAMES = {0: "pcm_mulaw", 8: "pcm_alaw"}


@functools.lru_cache(maxsize=8)
def g711_payloads(payload_type: int, ptime_ms: int, seconds: float = 1.0) -> list[bytes]:
    """A 440 Hz tone at -20 dBFS in G.711 (µ-law for payload type 0, else A-law), cut into
    ptime frames."""
    data = rtp.g711_encode(rtp.tone(8000, seconds), payload_type)
    size = 8 * ptime_ms
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


# Opus as sent: wideband (8 kHz audio bandwidth, so the G.107.1 scale applies), constant
# 32 kbit/s (80 octets per 20 ms, the `OPUS` pacing of agent.quality), voice mode.
OPUS_BITRATE = 32000
OPUS_CUTOFF_HZ = 8000


def _tone(rate: int, seconds: float) -> Any:
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 440.0 * t) * 3276).astype(np.int16)


def _av_encode(name: str, rate: int, ptime_ms: int, seconds: float, **opts: Any) -> list[bytes]:
    """A 440 Hz tone at -20 dBFS encoded by PyAV (libavcodec), one packet per ptime."""
    import fractions

    import av

    bit_rate = opts.pop("bit_rate", None)
    ctx: Any = av.CodecContext.create(name, "w")
    ctx.sample_rate, ctx.layout, ctx.format = rate, "mono", "s16"
    ctx.time_base = fractions.Fraction(1, rate)
    if bit_rate is not None:
        ctx.bit_rate = bit_rate
    ctx.options = {k: str(v) for k, v in opts.items()}
    samples = _tone(rate, seconds)
    step = rate * ptime_ms // 1000
    out: list[bytes] = []
    for i in range(0, len(samples) - step + 1, step):
        frame = av.AudioFrame.from_ndarray(
            samples[i : i + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, i
        frame.time_base = fractions.Fraction(1, rate)
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    return out


@functools.lru_cache(maxsize=16)
def codec_payloads(codec: str, ptime_ms: int, seconds: float = 1.0) -> list[bytes]:
    """A second of the test tone in `codec` (PCMU, PCMA, G722, OPUS), one payload per ptime."""
    name = codec.upper()
    if name in ("PCMU", "PCMA"):
        return g711_payloads(0 if name == "PCMU" else 8, ptime_ms, seconds)
    if name == "G722":  # 16 kHz audio, 64 kbit/s: 8 octets per ms
        data = b"".join(_av_encode("g722", 16000, ptime_ms, seconds))
        size = quality.get_codec("G722").payload_bytes(ptime_ms)
        return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]
    if name == "OPUS":
        if ptime_ms not in OPUS_FRAME_MS:
            raise ValueError(f"Opus cannot fill a {ptime_ms} ms packet with one frame "
                             f"(one of {', '.join(map(str, OPUS_FRAME_MS))} ms)")  # fmt: skip
        return _av_encode("libopus", 48000, ptime_ms, seconds, bit_rate=OPUS_BITRATE,
                          vbr="off", application="voip", cutoff=OPUS_CUTOFF_HZ,
                          frame_duration=ptime_ms)  # fmt: skip
    raise ValueError(f"no encoder for codec {codec!r} (PCMU, PCMA, G722, OPUS)")


def bind_rtp_pair(host: str, port: int = 0) -> tuple[socket.socket, socket.socket]:
    """Bind an even RTP port and the odd RTCP port above it (RFC 3550 §11)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    tries = [port] if port else [random.randrange(16384, 32766) & ~1 for _ in range(64)]
    for p in tries:
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, p))
            rtcp.bind((host, p + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        for s in (rtp, rtcp):
            s.setblocking(False)
        return rtp, rtcp
    raise OSError(f"no free RTP/RTCP port pair on {host}")


@dataclass
class SendState:
    """Our outgoing stream; `send_times[i]` is when packet i left (monotonic)."""

    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    first_seq: int = field(default_factory=lambda: secrets.randbits(16))
    first_ts: int = field(default_factory=lambda: secrets.randbits(32))
    sent: int = 0
    octets: int = 0
    send_errors: int = 0
    send_times: list[float] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _kernel_arrival(ancdata: list[tuple[int, int, bytes]], offset: float) -> float:
    """Kernel receive time (SO_TIMESTAMPNS, wall clock) moved to the monotonic clock."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec * 1e-9 - offset
    return time.monotonic()


def _reader(sock: socket.socket, cb: Any) -> Any:
    """A read callback draining `sock`, stamping each datagram with its kernel arrival time,
    so a busy process does not count its own lateness as network jitter."""

    def on_readable() -> None:
        offset = time.time() - time.monotonic()
        for _ in range(64):
            try:
                data, anc, _, addr = sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors (port unreachable) surface here; nothing to read
            cb(data, (str(addr[0]), int(addr[1])), _kernel_arrival(anc, offset))

    return on_readable


class RtpSession:
    """One call's media. `echo=True` reflects every RTP packet back to its source."""

    def __init__(
        self,
        host: str,
        *,
        payload_type: int = 0,
        ptime_ms: int = 20,
        echo: bool = False,
        rtcp_interval_s: float = 1.0,
    ) -> None:
        self.host = host
        self.payload_type = payload_type
        self.codec = {0: "PCMU", 8: "PCMA", 9: "G722"}.get(payload_type, "PCMU")
        self.ptime_ms = ptime_ms
        self.echo = echo
        self.rtcp_interval_s = rtcp_interval_s
        self.tx = SendState()
        self.rx: dict[int, StreamRecord] = {}
        self.remote_rtp: Addr | None = None
        self.remote_rtcp: Addr | None = None
        self.port = 0
        self.rtcp_received = 0
        self.rtcp_sent = 0
        self.rtcp_errors = 0
        self.rtp_errors = 0
        self.echoed = 0
        self.reports_about_us: list[dict[str, Any]] = []  # report blocks for our SSRC
        self.rtts_ms: list[float] = []
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._readers: list[socket.socket] = []
        self._pacer_handle: int | None = None
        self._sender: Any = None  # agent.sip.sender.SenderProcess, imported on first use
        self._sender_handle: int | None = None
        self._in_process = False
        self._rtcp_task: asyncio.Task[None] | None = None
        self._previous: dict[int, tuple[int, int]] = {}
        self._payloads: list[bytes] = []
        self._ticks = 8 * ptime_ms
        self._stop_at: float | None = None
        self.done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self, port: int = 0) -> int:
        if PACER == "process":
            from agent.sip.sender import SenderProcess

            try:  # start (or reuse) the sender process now, not when the stream starts
                await asyncio.to_thread(SenderProcess.shared)
            except OSError as exc:
                log.warning("%s: RTP will be paced in a thread", exc)
        loop = asyncio.get_running_loop()
        rtp, rtcp = bind_rtp_pair(self.host, port)
        self._sockets = (rtp, rtcp)
        self.port = rtp.getsockname()[1]
        for sock, cb in ((rtp, self._on_rtp), (rtcp, self._on_rtcp)):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            loop.add_reader(sock, _reader(sock, cb))
            self._readers.append(sock)
        return self.port

    def set_remote(self, rtp: Addr, rtcp: Addr | None = None) -> None:
        self.remote_rtp = rtp
        self.remote_rtcp = rtcp or (rtp[0], rtp[1] + 1)

    # ------------------------------------------------------------------ sending

    def start(self, duration_s: float | None = None) -> None:
        """Start the paced stream (and RTCP); stop after `duration_s` if given."""
        if self.remote_rtp is None:
            raise RuntimeError("remote RTP address is not set")
        self._loop = asyncio.get_running_loop()
        if not self._payloads:
            self._payloads = list(codec_payloads(self.codec, self.ptime_ms))
        self._ticks = self.ticks()  # the pacer thread reads it for every packet
        now = time.monotonic()
        self._t0 = now + 0.005
        self._stop_at = None if duration_s is None else self._t0 + duration_s
        if PACER == "process" and self._sockets is not None:
            try:
                self._start_in_process(duration_s)
            except OSError as exc:
                log.warning("RTP sender process unavailable (%s): pacing in a thread", exc)
                self._pacer_handle = Pacer.shared().add(self._send_one, self._t0)
        else:
            self._pacer_handle = Pacer.shared().add(self._send_one, self._t0)
        self.start_rtcp()

    def _start_in_process(self, duration_s: float | None) -> None:
        from agent.sip.sender import SenderProcess, StreamPlan

        assert self._sockets is not None and self.remote_rtp is not None
        tx = self.tx
        count = None if duration_s is None else max(1, round(duration_s * 1000 / self.ptime_ms))
        plan = StreamPlan(
            self.remote_rtp, self.payload_type, tx.ssrc, tx.first_seq, tx.first_ts,
            self.ptime_ms, self._t0, count, self._payloads, self.ticks(),
        )  # fmt: skip
        self._sender = SenderProcess.running()
        if self._sender is None:
            raise OSError("the RTP sender process is not running")
        self._sender_handle = self._sender.add(self._sockets[0], plan, self._sender_done)
        self._in_process = True

    def _sender_done(self, times: list[float], errors: int) -> None:
        """From the sender process (on its reader thread): the stream has ended."""
        tx = self.tx
        tx.send_times = times
        tx.deadlines = [self._t0 + i * self.ptime_ms / 1000.0 for i in range(len(times))]
        tx.sent = len(times)
        tx.octets = sum(len(self._payloads[i % len(self._payloads)]) for i in range(len(times)))
        tx.send_errors = errors
        self._in_process = False
        self._loop_call(self.done.set)

    def set_codec(self, payload_type: int, codec: str) -> None:
        """The negotiated payload type and codec (streams already seen get its clock)."""
        self.payload_type, self.codec = payload_type, codec.upper()
        for rec in self.rx.values():
            rec.clock_rate = self.clock_rate()

    def ticks(self) -> int:
        """RTP timestamp ticks per packet: the codec's RTP clock times the ptime."""
        return quality.get_codec(self.codec).rtp_ticks(self.ptime_ms)

    def clock_rate(self) -> int:
        return quality.get_codec(self.codec).clock_rate

    def packets_sent(self, now: float) -> int:
        """Packets sent so far (from the schedule while the sender process runs the stream)."""
        if not self._in_process:
            return self.tx.sent
        return max(0, int((now - self._t0) * 1000 / self.ptime_ms) + 1)

    def start_rtcp(self) -> None:
        if self._rtcp_task is None:
            self._rtcp_task = asyncio.create_task(self._rtcp_loop())

    def _send_one(self, deadline: float) -> float | None:
        tx = self.tx
        if self._stop_at is not None and deadline >= self._stop_at - 1e-6:
            self._loop_call(self.done.set)
            return None
        i = tx.sent
        payload = self._payloads[i % len(self._payloads)]
        data = rtp.rtp_packet(
            self.payload_type,
            (tx.first_seq + i) & 0xFFFF,
            (tx.first_ts + i * self._ticks) & 0xFFFFFFFF,
            tx.ssrc,
            payload,
        )
        socks = self._sockets
        if socks is None or self.remote_rtp is None:
            return None  # closed under us
        try:
            socks[0].sendto(data, self.remote_rtp)
        except OSError:
            tx.send_errors += 1
        tx.send_times.append(time.monotonic())
        tx.deadlines.append(deadline)
        tx.sent += 1
        tx.octets += len(payload)
        return self._t0 + (i + 1) * self.ptime_ms / 1000.0

    def _loop_call(self, fn: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ receiving

    def _on_rtp(self, data: bytes, addr: Addr, arrival: float) -> None:
        try:
            pkt = rtp.parse_rtp(data)
        except ValueError:
            self.rtp_errors += 1
            return
        rec = self.rx.get(pkt.ssrc)
        if rec is None:
            rec = self.rx[pkt.ssrc] = StreamRecord(pkt.ssrc, clock_rate=self.clock_rate())
        rec.on_rtp(pkt.sequence_number, pkt.timestamp, pkt.payload_type, arrival)
        if self.echo and self._sockets is not None:
            with contextlib.suppress(OSError):
                self._sockets[0].sendto(data, addr)
                self.echoed += 1

    def _on_rtcp(self, data: bytes, addr: Addr, arrival: float) -> None:
        try:
            packets = rtp.parse_rtcp(data)
        except ValueError:
            self.rtcp_errors += 1
            return
        self.rtcp_received += 1
        now_ntp = ntp_timestamp(time.time())
        for p in packets:
            if p.sender is not None:
                rec = self.rx.get(p.ssrc)
                if rec is None:
                    rec = self.rx[p.ssrc] = StreamRecord(p.ssrc, clock_rate=self.clock_rate())
                rec.on_sr(p.sender[0], p.sender[2], arrival)
            # sender and receiver reports both carry report blocks
            for r in p.reports:
                if r.ssrc != self.tx.ssrc:
                    continue
                block = {
                    "packets_lost": r.packets_lost,
                    "highest_sequence": r.highest_sequence,
                    "jitter": r.jitter,
                    "fraction_lost": r.fraction_lost,
                    "at": arrival,
                }
                self.reports_about_us.append(block)
                rtt = rtt_from_report(r.lsr, r.dlsr, now_ntp)
                if rtt is not None:
                    self.rtts_ms.append(rtt)

    # ------------------------------------------------------------------ RTCP

    def main_remote_stream(self) -> StreamRecord | None:
        """The far end's own stream (not our echo), the one with most packets."""
        streams = [r for s, r in self.rx.items() if s != self.tx.ssrc and r.seqs]
        return max(streams, key=lambda r: len(r.seqs)) if streams else None

    def build_rtcp(self, *, bye: bool = False) -> bytes:
        now = time.monotonic()
        reports = []
        for rec in self.rx.values():
            if not rec.seqs or rec.ssrc == self.tx.ssrc:
                continue
            b = rec.report_block(now, previous=self._previous.get(rec.ssrc))
            self._previous[rec.ssrc] = (b["expected"], b["received"])
            reports.append(
                rtp.ReportBlock(
                    ssrc=rec.ssrc,
                    fraction_lost=b["fraction_lost"],
                    packets_lost=b["packets_lost"],
                    highest_sequence=b["highest_sequence"],
                    jitter=b["jitter"],
                    lsr=b["lsr"],
                    dlsr=b["dlsr"],
                )
            )
        reports = reports[:31]
        sender: tuple[int, int, int, int] | None = None
        sent = self.packets_sent(time.monotonic())
        if sent:
            elapsed = sent * self.ticks()
            octets = sent * len(self._payloads[0]) if self._payloads else 0
            sender = (
                ntp_timestamp(time.time()),  # NTP timestamp, RTP timestamp, packets, octets
                (self.tx.first_ts + elapsed) & 0xFFFFFFFF,
                sent,
                octets & 0xFFFFFFFF,
            )
        data = bytes(rtp.Report(self.tx.ssrc, sender, reports))
        if bye:
            data += rtp.rtcp_bye([self.tx.ssrc])
        return data

    def send_rtcp(self, *, bye: bool = False) -> None:
        if self.remote_rtcp is None or not self._readers or self._sockets is None:
            return
        try:
            self._sockets[1].sendto(self.build_rtcp(bye=bye), self.remote_rtcp)
            self.rtcp_sent += 1
        except OSError:
            pass

    async def _rtcp_loop(self) -> None:
        while True:
            # RFC 3550 §6.3.1: randomise the interval (0.5 .. 1.5 times) so ends don't sync.
            await asyncio.sleep(self.rtcp_interval_s * random.uniform(0.5, 1.5))
            self.send_rtcp()

    def stop_sending(self) -> None:
        if self._pacer_handle is not None:
            Pacer.shared().cancel(self._pacer_handle)
            self._pacer_handle = None
        if self._in_process and self._sender is not None and self._sender_handle is not None:
            self._sender.cancel(self._sender_handle)

    async def close(self, *, final_rtcp: bool = True) -> None:
        self.stop_sending()
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rtcp_task
            self._rtcp_task = None
        if final_rtcp:
            self.send_rtcp(bye=True)
        loop = asyncio.get_running_loop()
        for sock in self._readers:
            loop.remove_reader(sock)
        self._readers = []
        if self._sockets is not None:
            socks, self._sockets = self._sockets, None
            for sock in socks:
                sock.close()
