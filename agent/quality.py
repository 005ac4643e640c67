"""Voice-quality maths, pure and I/O-free: jitter, IPDV, loss/reorder/duplicates, bursts, E-model.

Every function documents the standard it implements. Times go in as seconds (floats, any
epoch: only differences matter) and come out in milliseconds, as the field names say.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    """Order statistics of a sample; every field is None for an empty sample."""

    count: int
    min: float | None
    avg: float | None
    median: float | None
    p95: float | None
    max: float | None
    stdev: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "min": self.min,
            "avg": self.avg,
            "median": self.median,
            "p95": self.p95,
            "max": self.max,
            "stdev": self.stdev,
        }


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted, non-empty values, interpolated linearly between the
    closest ranks (numpy's default "linear" method, R's type 7)."""
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (numpy's default), None if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return None
    return _sorted_percentile(ordered, q)


def summarize(values: Iterable[float]) -> Summary:
    """min/avg/median/p95/max and population standard deviation of `values`."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return Summary(0, None, None, None, None, None, None)
    n = len(ordered)
    avg = math.fsum(ordered) / n
    return Summary(
        count=n,
        min=ordered[0],
        avg=avg,
        median=_sorted_percentile(ordered, 50.0),
        p95=_sorted_percentile(ordered, 95.0),
        max=ordered[-1],
        stdev=math.sqrt(math.fsum((v - avg) ** 2 for v in ordered) / n),
    )


def mean_abs_delta_ms(rtts_ms: Sequence[float]) -> float | None:
    """Mean absolute difference of consecutive values (ping-style jitter), None if < 2 values.

    This is what most ping-based VoIP tests call "jitter"; it is not RFC 3550 jitter.
    """
    if len(rtts_ms) < 2:
        return None
    return math.fsum(abs(b - a) for a, b in itertools.pairwise(rtts_ms)) / (len(rtts_ms) - 1)


# --------------------------------------------------------------------------- jitter / IPDV


def rfc3550_jitter_series(send_s: Sequence[float], recv_s: Sequence[float]) -> list[float]:
    """RFC 3550 §6.4.1 interarrival jitter after each packet, in ms.

    For consecutive packets i-1, i (in the order given, which should be arrival order):
    `D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1})` and `J += (|D| - J) / 16`, starting at 0.
    A constant clock offset between sender and receiver cancels in D. The series has one
    entry per packet (the first is 0).
    """
    _same_length(send_s, recv_s)
    out = [0.0] * len(send_s)
    j = 0.0
    for i in range(1, len(send_s)):
        d = abs((recv_s[i] - recv_s[i - 1]) - (send_s[i] - send_s[i - 1])) * 1000.0
        j += (d - j) / 16.0
        out[i] = j
    return out


def _same_length(send_s: Sequence[float], recv_s: Sequence[float]) -> None:
    if len(send_s) != len(recv_s):
        raise ValueError("send and receive times must have the same length")


def rfc3550_jitter_ms(send_s: Sequence[float], recv_s: Sequence[float]) -> float:
    """Final RFC 3550 interarrival jitter (ms) over the stream; 0 for fewer than 2 packets."""
    series = rfc3550_jitter_series(send_s, recv_s)
    return float(series[-1]) if series else 0.0


def one_way_delays_ms(send_s: Sequence[float], recv_s: Sequence[float]) -> list[float]:
    """Per-packet one-way delay R_i - S_i in ms (includes any clock offset between the ends)."""
    _same_length(send_s, recv_s)
    return [(r - s) * 1000.0 for s, r in zip(send_s, recv_s, strict=True)]


def ipdv_ms(send_s: Sequence[float], recv_s: Sequence[float]) -> list[float]:
    """RFC 3393 IP packet delay variation: D(i) - D(i-1) of one-way delays, sign kept (ms).

    Pass packets in sequence order with lost ones removed; the clock offset cancels.
    """
    d = one_way_delays_ms(send_s, recv_s)
    return [b - a for a, b in itertools.pairwise(d)]


# --------------------------------------------------------------------------- sequence numbers


def unwrap_sequence(seqs: Iterable[int], bits: int = 16) -> list[int]:
    """Extend wrapping sequence numbers (16-bit RTP, 32-bit TWAMP) to monotonic integers.

    Each number is placed at the extension nearest the highest one seen so far (RFC 3550
    Appendix A.1 style), so a wrap from 65535 to 0 continues at 65536 and a late packet from
    before the wrap stays below it.
    """
    if bits not in (16, 32):
        raise ValueError(f"sequence numbers are 16 or 32 bits, not {bits}")
    mod = 1 << bits
    half = mod >> 1
    out: list[int] = []
    highest: int | None = None
    for raw in seqs:
        if not 0 <= raw < mod:
            raise ValueError(f"sequence number {raw} does not fit in {bits} bits")
        if highest is None:
            ext = raw
        else:
            delta = (raw - highest) % mod
            if delta >= half:
                delta -= mod
            ext = highest + delta
        out.append(ext)
        if highest is None or ext > highest:
            highest = ext
    return out


# A stream longer than this is not a probe's stream: an hour of 1000 packets/s is 3.6 M.
MAX_SEQUENCE_SPAN = 20_000_000


@dataclass(frozen=True)
class SequenceStats:
    """Loss, duplicates and reordering of one stream (RFC 3550 A.3 / RFC 4737 style).

    `expected` spans first..last sequence number seen unless the caller knows how many were
    sent. `lost` counts distinct sequence numbers never received; duplicates and reordered
    packets are counted separately and do not hide loss.
    """

    expected: int
    received: int
    unique: int
    lost: int
    loss_pct: float
    duplicates: int
    reordered: int
    reorder_pct: float
    received_mask: tuple[bool, ...]


def sequence_stats(
    seqs: Iterable[int],
    *,
    bits: int = 16,
    first: int | None = None,
    expected: int | None = None,
) -> SequenceStats:
    """Analyse sequence numbers in arrival order.

    `first` (raw sequence number of the first packet sent) and `expected` (how many were
    sent) make loss at the start and end of the stream visible; without them the span seen
    is used. A packet is reordered (RFC 4737 §3.3) when it arrives after a packet with a
    higher sequence number; a duplicate is a sequence number already received.
    """
    ext = unwrap_sequence(seqs, bits)
    received = len(ext)
    if first is not None:
        # Place the first-sent number in the same extension as the first packet seen.
        if ext:
            mod = 1 << bits
            delta = (first - ext[0]) % mod
            if delta >= mod >> 1:
                delta -= mod
            base = ext[0] + delta
        else:
            base = first
    else:
        base = min(ext) if ext else 0
    if expected is None:
        expected = (max(ext) - base + 1) if ext else 0
    if expected > MAX_SEQUENCE_SPAN:
        raise ValueError(
            f"sequence numbers span {expected} packets, more than {MAX_SEQUENCE_SPAN}: "
            "not one stream (or a peer sending garbage)"
        )
    seen: set[int] = set()
    duplicates = 0
    reordered = 0
    highest: int | None = None
    for e in ext:
        if e in seen:
            duplicates += 1
            continue
        seen.add(e)
        if highest is not None and e < highest:
            reordered += 1
        if highest is None or e > highest:
            highest = e
    mask = tuple((base + i) in seen for i in range(expected))
    got = sum(mask)
    lost = expected - got
    unique = len(seen)
    return SequenceStats(
        expected=expected,
        received=received,
        unique=unique,
        lost=lost,
        loss_pct=(100.0 * lost / expected) if expected else 0.0,
        duplicates=duplicates,
        reordered=reordered,
        reorder_pct=(100.0 * reordered / unique) if unique else 0.0,
        received_mask=mask,
    )


# --------------------------------------------------------------------------- loss bursts


@dataclass(frozen=True)
class BurstStats:
    """Loss pattern of a stream: runs of lost packets (bursts) and received ones (gaps).

    `burst_ratio` is G.107's BurstR for a 2-state Markov model: `1 / (p + q)` with
    p = P(lost | previous received) and q = P(received | previous lost). BurstR = 1 for
    random loss, > 1 for bursty loss; 1 when nothing (or everything) was lost.
    """

    bursts: int
    mean_burst_len: float
    max_burst_len: int
    mean_gap_len: float
    p_loss_after_received: float
    p_received_after_loss: float
    burst_ratio: float


def _runs(mask: Sequence[bool], value: bool) -> list[int]:
    runs: list[int] = []
    n = 0
    for m in mask:
        if m == value:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs


def burst_stats(received_mask: Sequence[bool]) -> BurstStats:
    """Bursts, gaps and BurstR (ITU-T G.107 §3.3 / Annex on Markov loss) from a loss mask.

    `received_mask[i]` is True when the i-th packet sent arrived.
    """
    lost_runs = _runs(received_mask, False)
    got_runs = _runs(received_mask, True)
    n_rr = n_rl = n_lr = n_ll = 0
    for prev, cur in itertools.pairwise(received_mask):
        if prev:
            if cur:
                n_rr += 1
            else:
                n_rl += 1
        elif cur:
            n_lr += 1
        else:
            n_ll += 1
    p = n_rl / (n_rr + n_rl) if (n_rr + n_rl) else 0.0
    q = n_lr / (n_lr + n_ll) if (n_lr + n_ll) else 1.0
    burst_ratio = 1.0 / (p + q) if lost_runs and got_runs and (p + q) > 0 else 1.0
    return BurstStats(
        bursts=len(lost_runs),
        mean_burst_len=statistics.fmean(lost_runs) if lost_runs else 0.0,
        max_burst_len=max(lost_runs) if lost_runs else 0,
        mean_gap_len=statistics.fmean(got_runs) if got_runs else 0.0,
        p_loss_after_received=p,
        p_received_after_loss=q,
        burst_ratio=burst_ratio,
    )


# --------------------------------------------------------------------------- E-model

NARROWBAND = "narrowband"
WIDEBAND = "wideband"

R0_SIMPLIFIED = 93.2  # G.107 default R0 - Is with all other parameters at their defaults
# G.107.1 (06/2019) §7.7: with the default values Ro,WB = 129 and Is,WB = 0, so a perfect
# wideband connection rates 129; Annex A maps R_WB onto the narrowband MOS function as
# R_WB / 1.29, which is also the factor between the two scales' tops.
R0_WIDEBAND = 129.0
WIDEBAND_SCALE_FACTOR = 1.29

EMODEL_NAMES = {
    NARROWBAND: "ITU-T G.107 (simplified)",
    WIDEBAND: "ITU-T G.107.1 (wideband)",
}


@dataclass(frozen=True)
class Codec:
    """E-model codec parameters and its RTP framing.

    Narrowband codecs take Ie/Bpl from ITU-T G.113 Appendix I, wideband ones Ie,WB/Bpl from
    G.113 Appendix IV. `assumed` names every parameter that is not a published value, with
    the value used (ITU-T P.564 asks an estimator to say so); it is empty when all are.
    """

    name: str
    ie: float  # equipment impairment factor (Ie, or Ie,WB on the wideband scale)
    bpl: float  # packet-loss robustness factor
    payload_type: int
    clock_rate: int  # RTP timestamp clock (G.722's is 8000 by RFC 3551 though it samples 16k)
    bytes_per_ms: float  # codec payload bytes per millisecond of audio
    lookahead_ms: float = 0.0
    scale: str = NARROWBAND
    assumed: tuple[str, ...] = ()

    def payload_bytes(self, ptime_ms: float) -> int:
        return round(self.bytes_per_ms * ptime_ms)

    def rtp_ticks(self, ptime_ms: float) -> int:
        """RTP timestamp increment for one packet of `ptime_ms` of audio."""
        return round(self.clock_rate * ptime_ms / 1000.0)


# Opus has no Ie,WB or Bpl in G.113; the values below are assumptions, named in every result.
OPUS_ASSUMED = (
    "Ie,WB = 13: G.113 publishes none for Opus; G.722 at 64 kbit/s's value is taken",
    "Bpl = 25.1: G.113 publishes none for Opus (it has its own concealment); "
    "G.711 with Appendix I PLC's value is taken",
)
G722_ASSUMED = (
    "Bpl = 4.3: G.113 publishes none for G.722; G.711 without concealment's value is taken",
)

CODECS: dict[str, Codec] = {
    "G711_PLC": Codec(
        "G711_PLC", ie=0.0, bpl=25.1, payload_type=0, clock_rate=8000, bytes_per_ms=8
    ),
    "G711": Codec("G711", ie=0.0, bpl=4.3, payload_type=0, clock_rate=8000, bytes_per_ms=8),
    "G729A": Codec(
        "G729A",
        ie=11.0,
        bpl=19.0,
        payload_type=18,
        clock_rate=8000,
        bytes_per_ms=1,
        lookahead_ms=5.0,
    ),
    # G.722 at 64 kbit/s: Ie,WB from G.113 (11/2007) Appendix IV, Table IV.1.
    "G722": Codec(
        "G722",
        ie=13.0,
        bpl=4.3,
        payload_type=9,
        clock_rate=8000,
        bytes_per_ms=8,
        scale=WIDEBAND,
        assumed=G722_ASSUMED,
    ),
    # Opus (RFC 6716/7587) paced as a 32 kbit/s mono voice stream: 80 octets per 20 ms,
    # libwebrtc's default bit rate for mono Opus voice; RTP clock 48 kHz (RFC 7587 §4.1).
    "OPUS": Codec(
        "OPUS",
        ie=13.0,
        bpl=25.1,
        payload_type=111,
        clock_rate=48000,
        bytes_per_ms=4,
        scale=WIDEBAND,
        assumed=OPUS_ASSUMED,
    ),
}


def get_codec(name: str) -> Codec:
    """Look a codec up by name (case-insensitive; PCMU/PCMA mean G.711 with PLC)."""
    key = name.upper().replace(".", "").replace("-", "_")
    key = {"PCMU": "G711_PLC", "PCMA": "G711_PLC", "G729": "G729A"}.get(key, key)
    if key not in CODECS:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(sorted(CODECS))})")
    return CODECS[key]


def delay_impairment(one_way_delay_ms: float) -> float:
    """Id of the simplified E-model: `0.024 d + 0.11 (d - 177.3) H(d - 177.3)`."""
    if one_way_delay_ms < 0:
        raise ValueError("one-way delay cannot be negative")
    d = one_way_delay_ms
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def effective_equipment_impairment(
    codec: Codec, loss_pct: float, burst_ratio: float = 1.0
) -> float:
    """G.107 Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl), Ppl in percent.

    G.107.1 uses the same form with Ie,WB and the same constant 95 (not 129).
    """
    if not 0.0 <= loss_pct <= 100.0:
        raise ValueError(f"loss {loss_pct} % is outside 0..100")
    if burst_ratio <= 0:
        raise ValueError("burst ratio must be positive")
    ppl = loss_pct
    return codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_ratio + codec.bpl)


def r_factor(
    codec: Codec | str, one_way_delay_ms: float, loss_pct: float, burst_ratio: float = 1.0
) -> float:
    """Transmission rating R on the codec's scale. Not clamped.

    Narrowband (simplified ITU-T G.107): `R = 93.2 - Id - Ie,eff`.
    Wideband (ITU-T G.107.1): `R = 129 - 1.29 Id - Ie,eff,WB`, with Is,WB = 0 and A = 0
    (the G.107.1 defaults) and the narrowband Id carried onto the wideband scale by its
    factor 1.29, so a delay costs the same MOS on both scales.
    """
    c = get_codec(codec) if isinstance(codec, str) else codec
    ie_eff = effective_equipment_impairment(c, loss_pct, burst_ratio)
    i_d = delay_impairment(one_way_delay_ms)
    if c.scale == WIDEBAND:
        return R0_WIDEBAND - WIDEBAND_SCALE_FACTOR * i_d - ie_eff
    return R0_SIMPLIFIED - i_d - ie_eff


def mos_from_r(r: float) -> float:
    """ITU-T G.107 Annex B: MOS_CQE = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R).

    MOS is 1 for R <= 0 and 4.5 for R >= 100.

    As in the standard (and the reference vectors), the polynomial is not clamped inside
    0 < R < 100, so it dips slightly below 1 (to about 0.99) for R under about 6.5.
    """
    if math.isnan(r):
        raise ValueError("R is NaN")
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def mos_from_r_wideband(r_wb: float) -> float:
    """ITU-T G.107.1 Annex A: MOS_CQEW is the G.107 Annex B function of R_WB / 1.29."""
    if math.isnan(r_wb):
        raise ValueError("R is NaN")
    return mos_from_r(r_wb / WIDEBAND_SCALE_FACTOR)


def mos_on_scale(r: float, scale: str) -> float:
    """MOS from R on the named scale (narrowband or wideband)."""
    if scale == WIDEBAND:
        return mos_from_r_wideband(r)
    if scale == NARROWBAND:
        return mos_from_r(r)
    raise ValueError(f"unknown E-model scale {scale!r} (known: {NARROWBAND}, {WIDEBAND})")


@dataclass(frozen=True)
class EModelResult:
    """R and MOS of one direction, with the scale they are on and the codec's ceiling.

    `ceiling_r`/`ceiling_mos` are what the same codec scores on a perfect network (no loss,
    no delay): the most this call could have scored, on the same scale.

    `mos_narrowband` is the figure that compares across codecs: G.107 Annex B applied to R
    on G.107.1's extended scale, where a narrowband R keeps its meaning (so 4.5 from R 100
    up). For a narrowband codec it is `mos`; for a wideband one `mos` is MOS_CQEW (Annex A,
    R / 1.29), which rates the same R lower because it is judged beside wideband speech.
    """

    codec: str
    one_way_delay_ms: float
    loss_pct: float
    burst_ratio: float
    r_factor: float
    mos: float
    scale: str
    model: str
    ceiling_r: float
    ceiling_mos: float
    mos_narrowband: float
    assumed: tuple[str, ...] = ()

    def fields(self) -> dict[str, object]:
        """The figures as `VoiceDirection` names them."""
        return {
            "r_factor": self.r_factor,
            "mos": self.mos,
            "mos_narrowband": self.mos_narrowband,
            "emodel": self.model,
            "scale": self.scale,
            "codec": self.codec,
            "ceiling_r": self.ceiling_r,
            "ceiling_mos": self.ceiling_mos,
            "assumed": list(self.assumed),
        }


def codec_ceiling(codec: Codec | str) -> tuple[float, float]:
    """(R, MOS) of the codec on a perfect network (no loss, no delay), on its own scale."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    r = r_factor(c, 0.0, 0.0)
    return r, mos_on_scale(r, c.scale)


def emodel(
    codec: Codec | str, one_way_delay_ms: float, loss_pct: float, burst_ratio: float = 1.0
) -> EModelResult:
    """R-factor and MOS for a codec at a mouth-to-ear delay, loss % and BurstR, on the
    codec's scale (G.107 for narrowband codecs, G.107.1 for wideband ones)."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    r = r_factor(c, one_way_delay_ms, loss_pct, burst_ratio)
    ceiling_r, ceiling_mos = codec_ceiling(c)
    return EModelResult(
        c.name,
        one_way_delay_ms,
        loss_pct,
        burst_ratio,
        r,
        mos_on_scale(r, c.scale),
        scale=c.scale,
        model=EMODEL_NAMES[c.scale],
        ceiling_r=ceiling_r,
        ceiling_mos=ceiling_mos,
        mos_narrowband=mos_from_r(r),
        assumed=c.assumed,
    )


def mouth_to_ear_delay_ms(
    network_one_way_ms: float,
    *,
    codec: Codec | str = "G711_PLC",
    ptime_ms: float = 20.0,
    jitter_buffer_ms: float = 60.0,
) -> float:
    """Mouth-to-ear delay d for the E-model: network one-way delay + jitter buffer +
    packetisation (one frame, ptime) + the codec's look-ahead."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    return max(0.0, network_one_way_ms) + jitter_buffer_ms + ptime_ms + c.lookahead_ms


def jitter_buffer_late(send_s: Sequence[float], recv_s: Sequence[float], buffer_ms: float) -> int:
    """Packets a fixed jitter buffer of `buffer_ms` would discard as late.

    Playout of packet i is scheduled at `S_i + (R_0 - S_0) + buffer`, anchored on the
    first packet received; a packet arriving after its playout time is late.
    """
    if len(send_s) == 0:
        return 0
    lag = recv_s[0] - send_s[0] + buffer_ms / 1000.0
    return sum(1 for s, r in zip(send_s, recv_s, strict=False) if r > s + lag + 1e-9)
