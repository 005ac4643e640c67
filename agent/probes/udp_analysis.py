"""Pure analysis of a TWAMP-light voice stream: RTT, loss and jitter per direction, MOS.

Input: what the sender saw (one `Reflection` per reflected packet, in arrival order, with
the four timestamps T1 sender send, T2 reflector receive, T3 reflector send, T4 sender
receive, all Unix ns) and how many packets it sent. No I/O, no clocks.

Direction of loss (RFC 5357 §4.2.1): a reflector that keeps its own per-session counter
(ours; any full TWAMP reflector) numbers the packets that *arrived*. For the reflection with
the highest reflector number r* (answering sender packet s*), the reflector had received
r*+1 packets out of the s*+1 sent so far, so forward loss = s* - r* (plus forward
duplicates); the reflector sent r*+1 replies and the gaps in reflector numbers received are
the backward losses, exactly. Packets sent after s* that never came back cannot be
attributed (`lost_unknown_direction`). A stateless reflector that copies the sender's
number (RFC 5357 Appendix I allows it) only gives round-trip loss.

Jitter per direction is RFC 3550 interarrival jitter over (T1, T2) in reflector arrival
order and (T3, T4) in sender arrival order: each pair is stamped by one clock on each side,
so a constant offset between the clocks cancels. RTT = (T4 - T1) - (T3 - T2).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from agent import quality
from agent.probes import summary_stats
from agent.wire.lite import UdpStreamStats, VoiceDirection

NS = 1e-9
MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class Reflection:
    sender_seq: int
    reflector_seq: int
    t1_ns: int
    t2_ns: int
    t3_ns: int
    t4_ns: int
    far_dscpe: int | None = None  # DSCP/ECN the reflector received (RFC 7750), if trusted
    near_tos: int | None = None  # TOS of the reflected packet as we received it
    far_ttl: int | None = None


@dataclass(frozen=True)
class StreamParams:
    sent: int
    codec: str = "G711_PLC"
    ptime_ms: float = 20.0
    jitter_buffer_ms: float = 60.0
    synchronized_clocks: bool = False
    reflector_counts: bool = False  # the reflector is known to keep a per-session counter


def _dscp(values: list[int | None]) -> tuple[int | None, dict[str, int]]:
    c = Counter(v >> 2 for v in values if v is not None)
    if not c:
        return None, {}
    return c.most_common(1)[0][0], {str(k): v for k, v in sorted(c.items())}


def _ecn(values: list[int | None]) -> dict[str, int]:
    """ECN codepoints seen (RFC 3168: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE) and their counts."""
    c = Counter(v & 3 for v in values if v is not None)
    return {str(k): v for k, v in sorted(c.items())}


def _mask_stats(mask: list[bool]) -> tuple[float | None, int | None]:
    if not mask:
        return None, None
    b = quality.burst_stats(mask)
    return b.burst_ratio, b.max_burst_len


def _late(send_s: list[float], recv_s: list[float], buffer_ms: float) -> tuple[int, float] | None:
    """Packets that would miss a fixed jitter buffer of `buffer_ms`: count and percent."""
    if not send_s:
        return None
    n = quality.jitter_buffer_late(send_s, recv_s, buffer_ms)
    return n, 100.0 * n / len(send_s)


def analyse(reflections: list[Reflection], p: StreamParams) -> UdpStreamStats:
    """Everything the udp probe reports, from the reflections received (arrival order)."""
    if p.sent < 0:
        raise ValueError("sent cannot be negative")
    # First copy of each (sender, reflector) pair: later copies are backward duplicates.
    seen_pairs: set[tuple[int, int]] = set()
    uniq: list[Reflection] = []
    for x in reflections:
        key = (x.sender_seq, x.reflector_seq)
        if key not in seen_pairs:
            seen_pairs.add(key)
            uniq.append(x)
    seq = quality.sequence_stats(
        [x.sender_seq for x in reflections if x.sender_seq < max(p.sent, 1)],
        bits=32,
        first=0,
        expected=p.sent,
    )
    rtts = [((x.t4_ns - x.t1_ns) - (x.t3_ns - x.t2_ns)) / 1e6 for x in uniq]
    dwell = [(x.t3_ns - x.t2_ns) / 1e6 for x in uniq]

    # forward: reflector arrival order is T2 order; backward: our arrival order
    by_first_s: dict[int, Reflection] = {}
    for x in uniq:
        by_first_s.setdefault(x.sender_seq, x)
    fwd_first = sorted(by_first_s.values(), key=lambda x: x.t2_ns)
    fwd_jitter = quality.rfc3550_jitter_ms(
        [x.t1_ns * NS for x in fwd_first], [x.t2_ns * NS for x in fwd_first]
    )
    back_jitter = quality.rfc3550_jitter_ms(
        [x.t3_ns * NS for x in uniq], [x.t4_ns * NS for x in uniq]
    )
    fwd_late = _late(
        [x.t1_ns * NS for x in fwd_first], [x.t2_ns * NS for x in fwd_first], p.jitter_buffer_ms
    )
    back_late = _late(
        [x.t3_ns * NS for x in uniq], [x.t4_ns * NS for x in uniq], p.jitter_buffer_ms
    )

    copied = bool(uniq) and all(x.reflector_seq == x.sender_seq for x in uniq)
    dups = _fwd_dups(uniq)
    # A per-session counter from 0 never runs ahead of the sender by more than the forward
    # duplicates (plus a little forward reordering); anything else is a shared counter.
    plausible = (
        bool(uniq)
        and max(x.reflector_seq for x in uniq) <= max(x.sender_seq for x in uniq) + dups + 16
    )
    counter_ok = plausible and (
        p.reflector_counts
        or not copied
        or seq.lost == 0  # nothing lost: a copy and a counter both give 0 and 0
    )
    fwd_lost = back_lost = None
    fwd_packets = back_packets = None
    unknown = seq.lost
    fwd_mask: list[bool] = []
    back_mask: list[bool] = []
    if counter_ok:
        method = "reflector sequence counter (RFC 5357 §4.2.1)"
        top = max(uniq, key=lambda x: x.reflector_seq)
        s_star, r_star = top.sender_seq, top.reflector_seq
        fwd_packets = s_star + 1
        fwd_lost = max(0, fwd_packets - (r_star + 1 - dups))
        r_seen = {x.reflector_seq for x in uniq}
        back_packets = r_star + 1
        back_lost = back_packets - len(r_seen)
        received_s = set(by_first_s)
        unknown = sum(1 for s in range(s_star + 1, p.sent) if s not in received_s)
        back_mask = [r in r_seen for r in range(back_packets)]
        fwd_mask = _forward_mask(by_first_s, s_star)
    elif copied:  # with losses, a copy and a counter that only lost backward look alike
        method = "unavailable: the reflector copies the sender's sequence number (stateless)"
    else:
        method = "unavailable: the reflector's sequence numbers are not a per-session counter"
        if not uniq:
            method = "unavailable: nothing came back"

    if p.synchronized_clocks and uniq:
        owd_f: float | None = statistics.median([(x.t2_ns - x.t1_ns) / 1e6 for x in uniq])
        owd_b: float | None = statistics.median([(x.t4_ns - x.t3_ns) / 1e6 for x in uniq])
        owd_method = "timestamps (clocks declared synchronised)"
    else:
        owd_f = owd_b = None
        owd_method = "RTT/2 (clocks not synchronised)"
    rtt = summary_stats(rtts)
    fwd_dscp, fwd_counts = _dscp([x.far_dscpe for x in uniq])
    back_dscp, back_counts = _dscp([x.near_tos for x in uniq])

    def direction(
        packets: int | None, lost: int | None, jitter: float, late: tuple[int, float] | None,
        mask: list[bool], owd: float | None, dscp: int | None, counts: dict[str, int],
        ecn: dict[str, int],
    ) -> VoiceDirection:  # fmt: skip
        loss_pct = (100.0 * lost / packets) if (lost is not None and packets) else None
        burst, max_burst = _mask_stats(mask)
        scored: dict[str, object] = {}
        d = owd if owd is not None else (rtt.median / 2 if rtt.median is not None else None)
        if d is not None and loss_pct is not None:
            m2e = quality.mouth_to_ear_delay_ms(
                d, codec=p.codec, ptime_ms=p.ptime_ms, jitter_buffer_ms=p.jitter_buffer_ms
            )
            eff = min(100.0, loss_pct + (late[1] if late else 0.0))
            scored = quality.emodel(p.codec, m2e, eff, burst or 1.0).fields()
        return VoiceDirection(
            source="stream", packets_sent=packets, lost=lost, loss_pct=loss_pct,
            packets_received=(packets - lost) if (packets is not None and lost is not None)
            else None,
            jitter_ms=jitter if uniq else None,
            late_discards=late[0] if late else None, late_pct=late[1] if late else None,
            burst_ratio=burst, max_burst=max_burst, one_way_delay_ms=owd,
            dscp_received=dscp, dscp_counts=counts, ecn_counts=ecn, **scored,  # type: ignore[arg-type]
        )  # fmt: skip

    m2e_all = None
    if rtt.median is not None:
        m2e_all = quality.mouth_to_ear_delay_ms(
            rtt.median / 2, codec=p.codec, ptime_ms=p.ptime_ms, jitter_buffer_ms=p.jitter_buffer_ms
        )
    return UdpStreamStats(
        sent=p.sent,
        received=seq.received,
        lost=seq.lost,
        loss_pct=seq.loss_pct,
        duplicates=seq.duplicates,
        reordered=seq.reordered,
        rtt_ms=rtt,
        rtt_samples_ms=_samples(uniq, p.sent),
        reflector_dwell_ms_median=statistics.median(dwell) if dwell else None,
        direction_loss_method=method,
        lost_unknown_direction=unknown,
        one_way_delay_method=owd_method,
        mouth_to_ear_delay_ms=m2e_all,
        out=direction(
            fwd_packets,
            fwd_lost,
            fwd_jitter,
            fwd_late,
            fwd_mask,
            owd_f,
            fwd_dscp,
            fwd_counts,
            _ecn([x.far_dscpe for x in uniq]),
        ),
        back=direction(
            back_packets,
            back_lost,
            back_jitter,
            back_late,
            back_mask,
            owd_b,
            back_dscp,
            back_counts,
            _ecn([x.near_tos for x in uniq]),
        ),
    )


def _samples(uniq: list[Reflection], sent: int) -> list[float | None]:
    """RTT of each of the first MAX_SAMPLES packets sent, in send order (µs precision)."""
    out: list[float | None] = [None] * min(sent, MAX_SAMPLES)
    for x in uniq:
        if x.sender_seq < len(out) and out[x.sender_seq] is None:
            rtt = ((x.t4_ns - x.t1_ns) - (x.t3_ns - x.t2_ns)) / 1e6
            out[x.sender_seq] = round(rtt, 3)
    return out


def _fwd_dups(uniq: list[Reflection]) -> int:
    """Forward duplicates: one sender packet answered under several reflector numbers."""
    per_s: dict[int, set[int]] = {}
    for x in uniq:
        per_s.setdefault(x.sender_seq, set()).add(x.reflector_seq)
    return sum(len(v) - 1 for v in per_s.values())


def _forward_mask(by_s: dict[int, Reflection], s_star: int) -> list[bool]:
    """Which sender packets 0..s* reached the reflector.

    Between two answered packets (s1, r1) < (s2, r2) the reflector received r2 - r1 - 1 of
    the s2 - s1 - 1 packets in between: the count lost forward is exact; which ones is
    not known when both directions lost packets in the same gap (they are put first).
    """
    mask = [False] * (s_star + 1)
    prev_s, prev_r = -1, -1
    for s in sorted(k for k in by_s if k <= s_star):
        r = by_s[s].reflector_seq
        gap = s - prev_s - 1
        arrived_in_gap = max(0, min(gap, r - prev_r - 1))
        lost_fwd = gap - arrived_in_gap
        for i in range(prev_s + 1 + lost_fwd, s):
            mask[i] = True
        mask[s] = True
        prev_s, prev_r = s, max(prev_r, r)
    return mask
