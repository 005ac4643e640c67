"""Unit tests for agent.quality: each figure checked against its standard's definition."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import quality as q

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "emodel_vectors.csv"
LOCAL_REFERENCE = Path(__file__).parent / "data" / "emodel_vectors.csv"


def _reference_rows() -> list[dict[str, str]]:
    path = REFERENCE if REFERENCE.exists() else LOCAL_REFERENCE
    with path.open() as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- E-model


def test_reference_vectors_are_present() -> None:
    assert len(_reference_rows()) == 336


@pytest.mark.parametrize("row", _reference_rows(), ids=lambda r: "-".join(r.values()))
def test_emodel_matches_reference_vector(row: dict[str, str]) -> None:
    res = q.emodel(
        row["codec"],
        float(row["one_way_delay_ms"]),
        float(row["loss_pct"]),
        float(row["burst_ratio"]),
    )
    assert res.r_factor == pytest.approx(float(row["r_factor"]), abs=1e-3)
    assert res.mos == pytest.approx(float(row["mos"]), abs=1e-3)


def test_emodel_clean_g711_is_the_ceiling() -> None:
    res = q.emodel("G711_PLC", 0, 0)
    assert res.r_factor == pytest.approx(93.2)
    assert res.mos == pytest.approx(4.4093, abs=1e-4)


def test_emodel_off_grid_is_monotonic_in_delay_and_loss() -> None:
    delays = np.linspace(0, 500, 51)
    r_delay = [q.r_factor("G711_PLC", d, 1.3) for d in delays]
    assert all(a > b for a, b in itertools.pairwise(r_delay))
    losses = np.linspace(0, 30, 61)
    r_loss = [q.r_factor("G729A", 80, p, 1.5) for p in losses]
    assert all(a > b for a, b in itertools.pairwise(r_loss))
    # The G.107 polynomial dips just below 1 for 0 < R < ~6.5 (the reference vectors keep
    # that); above it MOS rises with R up to 4.5.
    mos = [q.mos_from_r(r) for r in np.linspace(7, 110, 207)]
    assert all(b >= a for a, b in itertools.pairwise(mos))
    assert max(mos) == 4.5
    assert 0.98 < q.mos_from_r(3) < 1.0


def test_burstier_loss_hurts_more() -> None:
    assert q.r_factor("G711_PLC", 50, 5, 2.0) < q.r_factor("G711_PLC", 50, 5, 1.0)


def test_delay_impairment_knee_at_177_3_ms() -> None:
    assert q.delay_impairment(177.3) == pytest.approx(0.024 * 177.3)
    assert q.delay_impairment(277.3) == pytest.approx(0.024 * 277.3 + 0.11 * 100)


def test_mos_from_r_bounds() -> None:
    assert q.mos_from_r(-5) == 1.0
    assert q.mos_from_r(0) == 1.0
    assert q.mos_from_r(100) == 4.5
    assert q.mos_from_r(50) == pytest.approx(1 + 1.75 + 7e-6 * 50 * -10 * 50)
    with pytest.raises(ValueError, match="NaN"):
        q.mos_from_r(math.nan)


def test_emodel_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown codec 'ILBC'"):
        q.emodel("ILBC", 0, 0)
    with pytest.raises(ValueError, match=r"outside 0\.\.100"):
        q.emodel("G711", 0, 120)
    with pytest.raises(ValueError, match="negative"):
        q.emodel("G711", -1, 0)
    with pytest.raises(ValueError, match="burst ratio"):
        q.emodel("G711", 0, 1, 0)


def test_codec_aliases() -> None:
    assert q.get_codec("PCMU").name == "G711_PLC"
    assert q.get_codec("g.729").name == "G729A"
    assert q.get_codec("PCMA").payload_bytes(20) == 160


def _annex_b(r: float) -> float:
    """G.107 Annex B written out again here, independent of the code under test."""
    return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


def test_wideband_g722_on_a_perfect_network_is_its_ceiling() -> None:
    # G.107.1: R = 129 - Ie,WB (13 for G.722 at 64 kbit/s) = 116; MOS from R / 1.29.
    res = q.emodel("G722", 0, 0)
    assert res.scale == "wideband" and res.model == "ITU-T G.107.1 (wideband)"
    assert res.r_factor == pytest.approx(116.0)
    assert res.mos == pytest.approx(_annex_b(116 / 1.29)) and res.mos == pytest.approx(
        4.3371, abs=1e-4
    )
    assert (res.ceiling_r, res.ceiling_mos) == (pytest.approx(116.0), pytest.approx(res.mos))


def test_wideband_g722_under_random_loss() -> None:
    # 2 % random loss: Ie,eff = 13 + (95 - 13) * 2 / (2 / 1 + 4.3) = 39.0317...; R = 89.968...
    res = q.emodel("G722", 0, 2.0)
    ie_eff = 13 + 82 * 2 / (2 + 4.3)
    assert res.r_factor == pytest.approx(129 - ie_eff)
    assert res.mos == pytest.approx(_annex_b((129 - ie_eff) / 1.29))
    assert res.mos == pytest.approx(3.5849, abs=1e-4)
    assert res.ceiling_mos == pytest.approx(4.3371, abs=1e-4)  # the ceiling does not move
    assert any("Bpl = 4.3" in a for a in res.assumed)


def test_wideband_opus_with_delay_and_bursty_loss() -> None:
    # d = 200 ms: Id = 0.024 * 200 + 0.11 * (200 - 177.3) = 7.297, carried onto the wideband
    # scale by 1.29; 3 % loss with BurstR 2: Ie,eff = 13 + 82 * 3 / (3 / 2 + 25.1).
    res = q.emodel("opus", 200, 3.0, 2.0)
    i_d = 0.024 * 200 + 0.11 * 22.7
    ie_eff = 13 + 82 * 3 / (1.5 + 25.1)
    assert res.r_factor == pytest.approx(129 - 1.29 * i_d - ie_eff)
    assert res.mos == pytest.approx(_annex_b(res.r_factor / 1.29))
    assert res.codec == "OPUS" and len(res.assumed) == 2
    assert any(a.startswith("Ie,WB = 13") for a in res.assumed)


def test_wideband_mos_mapping_bounds_and_scales() -> None:
    assert q.mos_from_r_wideband(129) == 4.5
    assert q.mos_from_r_wideband(0) == 1.0
    assert q.mos_from_r_wideband(64.5) == pytest.approx(_annex_b(50))
    assert q.mos_on_scale(93.2, "narrowband") == pytest.approx(_annex_b(93.2))
    with pytest.raises(ValueError, match="unknown E-model scale 'fullband'"):
        q.mos_on_scale(50, "fullband")


def test_narrowband_results_name_their_scale_and_publish_every_parameter() -> None:
    res = q.emodel("PCMU", 0, 0)
    assert res.scale == "narrowband" and res.ceiling_r == pytest.approx(93.2)
    assert res.assumed == ()
    assert res.fields()["emodel"] == "ITU-T G.107 (simplified)"


def test_wideband_codec_framing() -> None:
    g722, opus = q.get_codec("G.722"), q.get_codec("OPUS")
    assert (g722.payload_type, g722.payload_bytes(20), g722.rtp_ticks(20)) == (9, 160, 160)
    assert (opus.payload_bytes(20), opus.rtp_ticks(20)) == (80, 960)


def test_mouth_to_ear_delay_adds_buffer_packetisation_and_lookahead() -> None:
    assert q.mouth_to_ear_delay_ms(30, codec="G711", ptime_ms=20, jitter_buffer_ms=60) == 110
    assert q.mouth_to_ear_delay_ms(30, codec="G729A", ptime_ms=20, jitter_buffer_ms=40) == 95
    assert q.mouth_to_ear_delay_ms(-3, jitter_buffer_ms=0, ptime_ms=20) == 20


# ----------------------------------------------------------------------------- jitter / IPDV


def test_rfc3550_jitter_zero_for_constant_delay_and_offset_cancels() -> None:
    send = np.arange(100) * 0.02
    recv = send + 12345.678  # a huge clock offset and a constant delay
    assert q.rfc3550_jitter_ms(send, recv) == pytest.approx(0.0, abs=1e-6)


def test_rfc3550_jitter_follows_the_recurrence() -> None:
    send = [0.0, 0.02, 0.04, 0.06]
    recv = [1.000, 1.025, 1.041, 1.061]  # transit deltas: +5 ms, -4 ms, 0 ms
    j = 0.0
    for d in (5.0, 4.0, 0.0):
        j += (d - j) / 16
    assert q.rfc3550_jitter_ms(send, recv) == pytest.approx(j, rel=1e-9)
    series = q.rfc3550_jitter_series(send, recv)
    assert series[0] == 0.0 and series[1] == pytest.approx(5 / 16)


def test_rfc3550_jitter_converges_to_mean_abs_transit_delta() -> None:
    # Transit alternating 10 ms / 11 ms: |D| = 1 ms every packet, so J converges to 1 ms.
    send = np.arange(2000) * 0.02
    recv = send + np.where(np.arange(2000) % 2 == 0, 0.010, 0.011)
    assert q.rfc3550_jitter_ms(send, recv) == pytest.approx(1.0, rel=1e-6)


def test_jitter_of_short_or_empty_streams() -> None:
    assert q.rfc3550_jitter_ms([], []) == 0.0
    assert q.rfc3550_jitter_ms([1.0], [2.0]) == 0.0
    with pytest.raises(ValueError, match="same length"):
        q.rfc3550_jitter_ms([1.0, 2.0], [1.0])


def test_ipdv_keeps_sign() -> None:
    send = [0.0, 0.02, 0.04]
    recv = [0.010, 0.033, 0.049]  # one-way delays 10, 13, 9 ms
    assert q.ipdv_ms(send, recv) == pytest.approx([3.0, -4.0])
    assert q.ipdv_ms([], []) == []


def test_mean_abs_delta() -> None:
    assert q.mean_abs_delta_ms([10, 12, 9]) == pytest.approx(2.5)
    assert q.mean_abs_delta_ms([10]) is None


def test_jitter_buffer_late_discards() -> None:
    send = [0.0, 0.02, 0.04, 0.06]
    recv = [0.100, 0.130, 0.205, 0.161]  # third packet: transit 165 ms, 65 ms over the first
    assert q.jitter_buffer_late(send, recv, 60) == 1
    assert q.jitter_buffer_late(send, recv, 100) == 0
    assert q.jitter_buffer_late([], [], 60) == 0


# ----------------------------------------------------------------------------- sequences


def test_unwrap_16_bit() -> None:
    assert q.unwrap_sequence([65533, 65534, 65535, 0, 1], 16) == [65533, 65534, 65535, 65536, 65537]
    # A late packet from before the wrap stays before it.
    assert q.unwrap_sequence([65535, 0, 65534, 1], 16) == [65535, 65536, 65534, 65537]


def test_unwrap_32_bit() -> None:
    top = 2**32 - 1
    assert q.unwrap_sequence([top - 1, top, 0, 1], 32) == [top - 1, top, top + 1, top + 2]


def test_unwrap_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="does not fit in 16 bits"):
        q.unwrap_sequence([70000], 16)
    with pytest.raises(ValueError, match="16 or 32"):
        q.unwrap_sequence([1], 8)


def test_sequence_stats_loss_across_wrap() -> None:
    seqs = [65530, 65531, 65533, 65534, 0, 1, 3]  # 65532, 65535, 2 lost
    st_ = q.sequence_stats(seqs, bits=16)
    assert (st_.expected, st_.lost, st_.duplicates, st_.reordered) == (10, 3, 0, 0)
    assert st_.loss_pct == pytest.approx(30.0)
    assert st_.received_mask == (True, True, False, True, True, False, True, True, False, True)


def test_sequence_stats_duplicates_and_reordering_do_not_hide_loss() -> None:
    seqs = [0, 1, 3, 2, 3, 5, 6, 6]  # 4 lost, 2 reordered, 3 and 6 duplicated
    st_ = q.sequence_stats(seqs, bits=32)
    assert st_.expected == 7
    assert st_.received == 8
    assert st_.unique == 6
    assert st_.lost == 1
    assert st_.duplicates == 2
    assert st_.reordered == 1
    assert st_.reorder_pct == pytest.approx(100 / 6)


def test_sequence_stats_with_known_first_and_count_sees_edge_loss() -> None:
    # 10 sent starting at 65534; the first and the last two never arrived.
    seqs = [65535, 0, 1, 2, 3, 4, 5]
    st_ = q.sequence_stats(seqs, bits=16, first=65534, expected=10)
    assert st_.lost == 3
    assert st_.received_mask[0] is False and st_.received_mask[-2:] == (False, False)


def test_sequence_stats_refuses_an_absurd_span() -> None:
    # Crafted 32-bit numbers must not make us allocate a mask of billions of entries.
    with pytest.raises(ValueError, match="not one stream"):
        q.sequence_stats([0, 2**31 - 1], bits=32)


def test_sequence_stats_empty() -> None:
    st_ = q.sequence_stats([], bits=16)
    assert (st_.expected, st_.lost, st_.loss_pct) == (0, 0, 0.0)
    st_ = q.sequence_stats([], bits=16, first=5, expected=50)
    assert st_.lost == 50 and st_.loss_pct == 100.0


@given(st.lists(st.integers(0, 65535), max_size=200))
def test_sequence_stats_invariants(seqs: list[int]) -> None:
    st_ = q.sequence_stats(seqs, bits=16)
    assert st_.unique + st_.duplicates == st_.received
    assert st_.expected - st_.lost == sum(st_.received_mask)
    assert 0.0 <= st_.loss_pct <= 100.0


# ----------------------------------------------------------------------------- bursts


def test_burst_stats_random_vs_bursty() -> None:
    assert q.burst_stats([True] * 10).burst_ratio == 1.0
    alternating = [i % 2 == 0 for i in range(100)]  # isolated single losses
    b = q.burst_stats(alternating)
    assert b.bursts == 50 and b.max_burst_len == 1
    # p = 1 (every received is followed by a loss), q = 1: BurstR = 0.5 (less bursty than random)
    assert b.burst_ratio == pytest.approx(0.5)
    bursty = ([True] * 45 + [False] * 5) * 4
    bb = q.burst_stats(bursty)
    assert bb.bursts == 4 and bb.mean_burst_len == 5 and bb.mean_gap_len == 45
    p = 4 / (4 * 44 + 4)  # 4 received->lost transitions out of all transitions from received
    qq = 3 / (3 + 16)  # 3 lost->received (the last burst ends the stream) out of 19
    assert bb.burst_ratio == pytest.approx(1 / (p + qq))
    assert bb.burst_ratio > 1


def test_burst_ratio_of_bernoulli_loss_is_about_one() -> None:
    rng = np.random.default_rng(7)
    mask = (rng.random(200_000) >= 0.05).tolist()
    assert q.burst_stats(mask).burst_ratio == pytest.approx(1.0, abs=0.03)


def test_burst_stats_empty_and_all_lost() -> None:
    assert q.burst_stats([]).burst_ratio == 1.0
    allgone = q.burst_stats([False] * 5)
    assert allgone.bursts == 1 and allgone.max_burst_len == 5 and allgone.burst_ratio == 1.0


# ----------------------------------------------------------------------------- summaries


def test_summarize() -> None:
    s = q.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert (s.count, s.min, s.max, s.median) == (5, 1.0, 100.0, 3.0)
    assert s.avg == pytest.approx(22.0)
    assert s.p95 == pytest.approx(80.8)
    empty = q.summarize([])
    assert empty.count == 0 and empty.as_dict() == dict.fromkeys(empty.as_dict())


def test_percentile() -> None:
    assert q.percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert q.percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        q.percentile([1], 101)


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=200),
    st.floats(min_value=0, max_value=100),
)
def test_order_statistics_equal_numpys_without_numpy(values: list[float], pct: float) -> None:
    # The agent computes these in pure Python (numpy costs an idle agent ~12 MiB); they must
    # stay what numpy's linear interpolation gives.
    assert q.percentile(values, pct) == pytest.approx(float(np.percentile(values, pct)), abs=1e-6)
    s = q.summarize(values)
    assert s.median == pytest.approx(float(np.median(values)), abs=1e-6)
    assert s.p95 == pytest.approx(float(np.percentile(values, 95)), abs=1e-6)
    assert s.avg == pytest.approx(float(np.mean(values)), abs=1e-6)
    assert s.stdev == pytest.approx(float(np.std(values)), rel=1e-6, abs=1e-6)


def test_the_maths_module_does_not_load_numpy() -> None:
    import subprocess
    import sys

    code = "import sys, agent.quality, agent.probes.udp_analysis; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
