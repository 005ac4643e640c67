"""Per-direction loss, jitter and RTT of a TWAMP stream, from timestamps given as numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import quality
from agent.probes.udp_analysis import Reflection, StreamParams, analyse

MS = 1_000_000


def stream(
    n: int,
    *,
    lost_fwd: set[int] = frozenset(),  # type: ignore[assignment]
    lost_back: set[int] = frozenset(),  # type: ignore[assignment]
    fwd_ms: list[float] | None = None,
    back_ms: list[float] | None = None,
    offset_ms: float = 0.0,
    copy_seq: bool = False,
) -> list[Reflection]:
    """Packets every 20 ms; the reflector's clock runs `offset_ms` ahead of ours."""
    out = []
    r = 0
    for s in range(n):
        if s in lost_fwd:
            continue
        t1 = s * 20 * MS
        t2 = t1 + int(((fwd_ms or [5.0] * n)[s] + offset_ms) * MS)
        t3 = t2 + 50_000
        t4 = t3 + int(((back_ms or [5.0] * n)[s] - offset_ms) * MS)
        seq = s if copy_seq else r
        r += 1
        if s in lost_back:
            continue
        out.append(Reflection(s, seq, t1, t2, t3, t4, far_dscpe=46 << 2, near_tos=46 << 2))
    return out


def test_forward_and_backward_losses_are_told_apart_by_the_reflector_counter() -> None:
    refl = stream(100, lost_fwd={3, 40, 41}, lost_back={6, 70})
    m = analyse(refl, StreamParams(sent=100))
    assert m.direction_loss_method.startswith("reflector sequence counter")
    assert (m.out.packets_sent, m.out.lost) == (100, 3)
    assert (m.back.packets_sent, m.back.lost) == (97, 2)
    assert m.out.loss_pct == pytest.approx(3.0)
    assert m.back.loss_pct == pytest.approx(200 / 97)
    assert m.lost == 5 and m.lost_unknown_direction == 0
    assert len(m.rtt_samples_ms) == 100
    assert [i for i, r in enumerate(m.rtt_samples_ms) if r is None] == [3, 6, 40, 41, 70]
    assert m.rtt_samples_ms[0] == pytest.approx(10.0)
    assert m.out.max_burst == 2


def test_losses_after_the_last_reflection_have_no_known_direction() -> None:
    refl = stream(50, lost_fwd={48}, lost_back={49})
    # r == s throughout: from an unknown reflector this could be a copy, so no split
    assert analyse(refl, StreamParams(sent=50)).out.lost is None
    m = analyse(refl, StreamParams(sent=50, reflector_counts=True))  # ours signs its replies
    assert m.lost == 2
    assert m.lost_unknown_direction == 2
    assert m.out.lost == 0 and m.back.lost == 0


def test_a_reflector_copying_sequence_numbers_only_gives_round_trip_loss() -> None:
    m = analyse(stream(50, lost_fwd={5}, copy_seq=True), StreamParams(sent=50))
    assert m.direction_loss_method.startswith("unavailable")
    assert m.out.lost is None and m.out.mos is None
    assert m.lost == 1


def test_jitter_per_direction_is_rfc3550_and_clock_offset_cancels() -> None:
    fwd = [5.0 + (3.0 if i % 2 else 0.0) for i in range(200)]
    back = [5.0] * 200
    m = analyse(stream(200, fwd_ms=fwd, back_ms=back, offset_ms=3_600_000.0), StreamParams(200))
    send = [i * 0.02 for i in range(200)]
    expected = quality.rfc3550_jitter_ms(
        send, [s + d / 1000 for s, d in zip(send, fwd, strict=True)]
    )
    assert m.out.jitter_ms == pytest.approx(expected, abs=1e-6)
    assert m.back.jitter_ms == pytest.approx(0.0, abs=1e-6)
    # RTT excludes the reflector's 50 µs dwell: 5 or 8 ms out, 5 back
    assert m.rtt_ms.min == pytest.approx(10.0, abs=1e-3)
    assert m.rtt_ms.max == pytest.approx(13.0, abs=1e-3)
    assert m.reflector_dwell_ms_median == pytest.approx(0.05)


def test_mos_uses_half_the_rtt_when_clocks_are_not_synchronised() -> None:
    m = analyse(stream(100, fwd_ms=[40.0] * 100, back_ms=[40.0] * 100), StreamParams(100))
    assert m.one_way_delay_method.startswith("RTT/2")
    d = quality.mouth_to_ear_delay_ms(40.0, codec="G711_PLC")
    assert m.out.r_factor == pytest.approx(quality.emodel("G711_PLC", d, 0.0).r_factor)
    assert m.out.dscp_received == 46 and m.out.dscp_counts == {"46": 100}


def test_duplicates_and_reordering_are_counted_without_hiding_loss() -> None:
    refl = stream(10)
    refl = [*refl[:3], refl[4], refl[3], *refl[5:], refl[9]]
    m = analyse(refl, StreamParams(10))
    assert m.lost == 0 and m.duplicates == 1 and m.reordered == 1


def test_nothing_back_is_all_loss_and_no_statistics() -> None:
    m = analyse([], StreamParams(10))
    assert m.lost == 10 and m.rtt_ms.median is None and m.out.jitter_ms is None


refl_st = st.builds(
    Reflection,
    sender_seq=st.integers(0, 60),
    reflector_seq=st.integers(0, 2**32 - 1) | st.integers(0, 80),
    t1_ns=st.integers(0, 10**12),
    t2_ns=st.integers(0, 10**12),
    t3_ns=st.integers(0, 10**12),
    t4_ns=st.integers(0, 10**12),
    far_dscpe=st.none() | st.integers(0, 255),
    near_tos=st.none() | st.integers(0, 255),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(refl_st, max_size=80), st.integers(0, 60), st.booleans())
def test_analysis_never_fails_on_odd_reflections(
    refl: list[Reflection], sent: int, counts: bool
) -> None:
    m = analyse(refl, StreamParams(sent=sent, reflector_counts=counts))
    assert 0 <= m.lost <= sent
    for d in (m.out, m.back):
        assert d.lost is None or d.lost >= 0
        assert d.loss_pct is None or 0.0 <= d.loss_pct <= 100.0


def test_ecn_is_counted_per_direction_from_the_reflector_report_and_the_reply() -> None:
    # out: the reflector saw CE (3) on 2 packets (RFC 7750 octet / STAMP CoS TLV); back:
    # the replies arrived ECT(0) (2)
    refl = [
        Reflection(s, s, s * 20_000_000, s * 20_000_000 + 1000, s * 20_000_000 + 2000,
                   s * 20_000_000 + 3000, far_dscpe=46 << 2 | (3 if s < 2 else 0),
                   near_tos=46 << 2 | 2)
        for s in range(5)
    ]  # fmt: skip
    stats = analyse(refl, StreamParams(sent=5))
    assert stats.out.ecn_counts == {"0": 3, "3": 2}
    assert stats.back.ecn_counts == {"2": 5}
    assert stats.out.dscp_counts == {"46": 5}


def test_an_opus_paced_stream_is_scored_on_the_wideband_scale() -> None:
    refl = stream(200, lost_fwd={10, 11, 90, 150})
    m = analyse(refl, StreamParams(sent=200, codec="OPUS", ptime_ms=20.0))
    out, back = m.out, m.back
    assert (out.scale, back.scale) == ("wideband", "wideband")
    assert out.emodel == "ITU-T G.107.1 (wideband)" and out.codec == "OPUS"
    assert out.ceiling_r == pytest.approx(116.0) and out.assumed  # Opus's Ie,WB is assumed
    assert out.loss_pct == pytest.approx(2.0)
    burst = out.burst_ratio or 1.0
    m2e = quality.mouth_to_ear_delay_ms(out.one_way_delay_ms or 10.0 / 2, codec="OPUS")
    expected = quality.emodel("OPUS", m2e, 2.0, burst)
    assert out.r_factor == pytest.approx(expected.r_factor)
    assert out.mos == pytest.approx(expected.mos)
    assert back.mos is not None and back.mos > out.mos
