"""Per-stream RTP statistics, pure: loss, jitter, jitter-buffer discards, RTCP report blocks, MOS.

Arrival times are passed in (seconds, monotonic). Loss, jitter and the E-model come from
`agent.quality`; this module only keeps the per-packet records and the RTCP arithmetic
(RFC 3550 §6.4, Appendix A.3 and A.8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent import quality
from agent.wire.voice import VoiceDirection, VoiceSource

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970


def ntp_timestamp(unix_s: float) -> int:
    """64-bit NTP timestamp for a Unix time."""
    secs = int(unix_s) + NTP_EPOCH_OFFSET
    frac = int((unix_s - int(unix_s)) * (1 << 32)) & 0xFFFFFFFF
    return ((secs & 0xFFFFFFFF) << 32) | frac


def ntp_middle32(ntp: int) -> int:
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass
class StreamRecord:
    """Every RTP packet of one received stream: sequence numbers, timestamps, arrival times."""

    ssrc: int
    clock_rate: int = 8000
    seqs: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    payload_type: int | None = None
    # RTCP: middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr_ntp32: int = 0
    last_sr_arrival: float | None = None
    sender_packet_count: int | None = None

    def on_rtp(self, seq: int, timestamp: int, payload_type: int, arrival: float) -> None:
        self.seqs.append(seq)
        self.timestamps.append(timestamp)
        self.arrivals.append(arrival)
        self.payload_type = payload_type

    def on_sr(self, ntp: int, packet_count: int, arrival: float) -> None:
        self.last_sr_ntp32 = ntp_middle32(ntp)
        self.last_sr_arrival = arrival
        self.sender_packet_count = packet_count

    def media_times(self) -> list[float]:
        """Sender times from RTP timestamps (seconds, unwrapped 32-bit, first packet = 0)."""
        if not self.timestamps:
            return []
        ext = quality.unwrap_sequence(self.timestamps, bits=32)
        t0 = ext[0]
        return [(t - t0) / self.clock_rate for t in ext]

    def report_block(
        self, now: float, *, previous: tuple[int, int] | None = None
    ) -> dict[str, int]:
        """Fields of an RTCP reception report block about this stream (RFC 3550 §6.4.1).

        `previous` is (expected, received) at the last report, for the fraction lost.
        """
        ext = quality.unwrap_sequence(self.seqs)
        if not ext:
            return {
                "fraction_lost": 0,
                "packets_lost": 0,
                "highest_sequence": 0,
                "jitter": 0,
                "lsr": 0,
                "dlsr": 0,
                "expected": 0,
                "received": 0,
            }
        base = ext[0] if ext[0] <= min(ext) else min(ext)
        highest = max(ext)
        expected = highest - base + 1
        received = len(set(ext))
        lost = expected - received
        fraction = 0
        if previous is not None:
            exp_int, rec_int = expected - previous[0], received - previous[1]
            if exp_int > 0 and exp_int > rec_int:
                fraction = min(255, ((exp_int - rec_int) << 8) // exp_int)
        jitter_ts = int(
            quality.rfc3550_jitter_ms(self.media_times(), self.arrivals) * self.clock_rate / 1000.0
        )
        dlsr = 0
        if self.last_sr_arrival is not None:
            dlsr = int((now - self.last_sr_arrival) * 65536) & 0xFFFFFFFF
        return {
            "fraction_lost": fraction,
            "packets_lost": max(-(1 << 23), min(lost, (1 << 23) - 1)),
            "highest_sequence": highest & 0xFFFFFFFF,
            "jitter": jitter_ts,
            "lsr": self.last_sr_ntp32,
            "dlsr": dlsr,
            "expected": expected,
            "received": received,
        }


def rtt_from_report(lsr: int, dlsr: int, arrival_ntp: int) -> float | None:
    """Round-trip time (ms) from a report block's LSR/DLSR (RFC 3550 §6.4.1), None if no SR yet."""
    if lsr == 0:
        return None
    a = ntp_middle32(arrival_ntp)
    rtt = (a - lsr - dlsr) & 0xFFFFFFFF
    if rtt > 0x7FFFFFFF:
        return None
    return rtt / 65536 * 1000.0


def score(
    *,
    codec: str,
    loss_pct: float,
    burst_ratio: float,
    one_way_ms: float,
    ptime_ms: float,
    jitter_buffer_ms: float,
) -> dict[str, object]:
    """R-factor and MOS with the mouth-to-ear delay of our jitter buffer and packetisation,
    on the codec's scale, as `VoiceDirection` fields (scale, model, ceiling, assumptions)."""
    d = quality.mouth_to_ear_delay_ms(
        one_way_ms, codec=codec, ptime_ms=ptime_ms, jitter_buffer_ms=jitter_buffer_ms
    )
    res = quality.emodel(codec, d, min(100.0, max(0.0, loss_pct)), max(burst_ratio, 1e-6))
    return res.fields()


def received_direction(
    rec: StreamRecord,
    *,
    sent: int | None,
    first_seq: int | None,
    send_times: list[float] | None,
    one_way_ms: float | None,
    codec: str,
    ptime_ms: float,
    jitter_buffer_ms: float,
) -> VoiceDirection:
    """Statistics of a stream we received.

    With `send_times` (our own stream echoed back, indexed by packet number from
    `first_seq`), delay is measured per packet and the one-way delay is half the round trip.
    Otherwise sender times come from the RTP timestamps and `one_way_ms` is an estimate.
    """
    seqstats = quality.sequence_stats(rec.seqs, first=first_seq, expected=sent)
    if send_times is not None and first_seq is not None:
        ext = quality.unwrap_sequence([first_seq, *rec.seqs])[1:]
        idx = [e - first_seq for e in ext]
        pairs = [
            (send_times[i], a)
            for i, a in zip(idx, rec.arrivals, strict=True)
            if 0 <= i < len(send_times)
        ]
        s = [p[0] for p in pairs]
        r = [p[1] for p in pairs]
        rtts = quality.one_way_delays_ms(s, r)
        one_way_ms = float(sorted(rtts)[len(rtts) // 2]) / 2.0 if len(rtts) else one_way_ms
        source = "echo"
    else:
        s, r = rec.media_times(), rec.arrivals
        source = "rtp"
    late = quality.jitter_buffer_late(s, r, jitter_buffer_ms) if s else 0
    jitter = quality.rfc3550_jitter_ms(s, r) if s else None
    mask = list(seqstats.received_mask)
    # Late packets are lost to the listener: fold them into the loss for the E-model.
    effective = seqstats.lost + late
    expected = seqstats.expected
    eff_loss = 100.0 * effective / expected if expected else 0.0
    burst = quality.burst_stats(mask).burst_ratio if mask else 1.0
    scored: dict[str, object] = {}
    if expected:  # an unknown network delay scores as 0 (and is reported as None)
        scored = score(
            codec=codec,
            loss_pct=eff_loss,
            burst_ratio=burst,
            one_way_ms=one_way_ms or 0.0,
            ptime_ms=ptime_ms,
            jitter_buffer_ms=jitter_buffer_ms,
        )
    return VoiceDirection(
        packets_sent=sent if sent is not None else rec.sender_packet_count,
        packets_received=seqstats.unique,
        lost=seqstats.lost if expected else None,
        loss_pct=seqstats.loss_pct if expected else None,
        late_discards=late,
        late_pct=100.0 * late / expected if expected else None,
        jitter_ms=jitter,
        one_way_delay_ms=one_way_ms,
        burst_ratio=burst,
        source=source,
        **scored,
    )


def reported_direction(
    *,
    sent: int,
    received: int | None,
    lost: int | None,
    jitter_ms: float | None,
    late: int | None,
    one_way_ms: float | None,
    codec: str,
    ptime_ms: float,
    jitter_buffer_ms: float,
    source: VoiceSource,
    burst_ratio: float = 1.0,
) -> VoiceDirection:
    """Our stream as the far end saw it (from its RTCP receiver report or its BYE answer)."""
    if lost is None and received is not None:
        lost = max(0, sent - received)
    if received is None and lost is not None:
        received = sent - lost
    loss_pct = 100.0 * lost / sent if (lost is not None and sent) else None
    scored: dict[str, object] = {}
    if loss_pct is not None:  # an unknown network delay scores as 0 (reported as None)
        eff = loss_pct + (100.0 * (late or 0) / sent if sent else 0.0)
        scored = score(
            codec=codec,
            loss_pct=eff,
            burst_ratio=burst_ratio,
            one_way_ms=one_way_ms or 0.0,
            ptime_ms=ptime_ms,
            jitter_buffer_ms=jitter_buffer_ms,
        )
    return VoiceDirection(
        source=source, packets_sent=sent, packets_received=received, lost=lost,
        loss_pct=loss_pct, late_discards=late,
        late_pct=100.0 * late / sent if (late is not None and sent) else None,
        jitter_ms=jitter_ms, one_way_delay_ms=one_way_ms, burst_ratio=burst_ratio,
        **scored,
    )  # fmt: skip
