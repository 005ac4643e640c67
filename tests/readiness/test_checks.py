"""Readiness grading without a network: thresholds, the ramp search, check figures."""

from __future__ import annotations

from typing import Any

import pytest

from agent import quality
from agent.probes import ProbeContext, run_probe
from agent.probes.nat_binding import IntervalResult, summarize
from agent.readiness import capacity, checks, net_checks, suite
from agent.readiness.checks import ProbeCall
from agent.readiness.path import PathFacts, classify, path_facts
from agent.readiness.thresholds import G711_ETHERNET_BPS, G711_IP_BPS, THRESHOLDS
from agent.wire.errors import CATEGORY_MESSAGES
from agent.wire.readiness import Check, ReadinessOptions, verdict
from agent.wire.results import ProbeResult, utcnow


def test_g711_wire_rates_are_the_documented_figures() -> None:
    assert G711_IP_BPS == 80_000  # 200 B x 50 packets/s
    assert G711_ETHERNET_BPS == 87_200  # (200 + 18) B x 50 packets/s


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("rtt_ms", 150.0, "pass"), ("rtt_ms", 150.1, "fail"),
        ("jitter_ms", 30.0, "pass"), ("jitter_ms", 31.0, "fail"),
        ("loss_pct", 1.0, "pass"), ("loss_pct", 1.01, "fail"),
        ("mos", 4.0, "pass"), ("mos", 3.99, "warn"), ("mos", 3.59, "fail"),
        ("bandwidth_pct_of_contracted", 79.9, "fail"), ("bandwidth_pct_of_contracted", 80, "pass"),
        ("nat_binding_s", 29, "fail"), ("path_mtu_bytes", 1400, "warn"),
        ("path_mtu_bytes", 1200, "fail"), ("rtt_ms", None, "skipped"),
    ],
)  # fmt: skip
def test_thresholds_grade_at_their_limits(key: str, value: float | None, status: str) -> None:
    assert THRESHOLDS[key].grade(value) == status


def test_threshold_descriptions_name_the_limits() -> None:
    assert THRESHOLDS["mos"].describe() == "warn < 4, fail < 3.6"
    assert THRESHOLDS["rtt_ms"].describe() == "fail > 150 ms"


def _run_search(true_capacity: int, ceiling: int) -> tuple[int, list[int]]:
    steps: dict[int, bool] = {}
    tried = []
    while (n := capacity.next_calls(steps, ceiling)) is not None:
        tried.append(n)
        steps[n] = n <= true_capacity
    return capacity.capacity_of(steps), tried


@pytest.mark.parametrize("true_capacity", [0, 1, 2, 5, 7, 11, 16, 40])
def test_ramp_search_finds_the_exact_capacity(true_capacity: int) -> None:
    found, tried = _run_search(true_capacity, ceiling=24)
    assert found == min(true_capacity, 24)
    assert len(tried) <= 10


def test_ramp_step_fails_on_aggregate_loss_and_names_the_direction() -> None:
    def stream(lost_up: int) -> dict:
        d = {"source": "stream", "packets_sent": 150, "jitter_ms": 1.0, "mos": 4.3}
        return {"out": {**d, "lost": lost_up}, "back": {**d, "lost": 0},
                "rtt_ms": {"p95": 5.0}}  # fmt: skip

    # one stream losing 2 of 150 is 1.3 % alone, but 0.44 % over three streams: still good
    ok = capacity.grade_step(3, [stream(2), stream(0), stream(0)], [])
    assert ok.ok and ok.worst_loss_pct == pytest.approx(100 * 2 / 450)
    bad = capacity.grade_step(3, [stream(6), stream(2), stream(0)], [])
    assert not bad.ok and bad.reason == "upstream loss 1.78 % > 1 %"


def test_ramp_step_grades_a_wideband_stream_on_the_narrowband_scale() -> None:
    good = quality.emodel("OPUS", 250.0, 0.0).fields()  # long path: R 97.9, MOS_CQEW 3.86
    d = {"source": "stream", "packets_sent": 150, "lost": 0, "jitter_ms": 1.0, **good}
    step = capacity.grade_step(1, [{"out": d, "back": d, "rtt_ms": {"p95": 5.0}}], [])
    assert good["mos"] < 4.0 < good["mos_narrowband"]
    assert step.ok and step.worst_mos == pytest.approx(good["mos_narrowband"])


def test_voice_checks_carry_the_direction_figures() -> None:
    m = {
        "rtt_ms": {"median": 42.0}, "direction_loss_method": "reflector sequence counter",
        "out": {"source": "stream", "packets_sent": 500, "lost": 15,
                 "loss_pct": 3.0, "jitter_ms": 2.0, "mos": 3.7, "r_factor": 75.0},
        "back": {"source": "stream", "packets_sent": 485, "lost": 0,
                 "loss_pct": 0.0, "jitter_ms": 45.0, "mos": 4.3, "r_factor": 90.0},
    }  # fmt: skip
    got = {c.id: c for c in checks.voice_checks(m)}
    assert got["voice.rtt"].status == "pass" and got["voice.rtt"].value == 42.0
    assert got["voice.loss.out"].status == "fail"
    assert got["voice.loss.out"].display == "3.00 % (15 of 500)"
    assert "lost" in got["voice.loss.out"].explanation and got["voice.loss.out"].fix
    assert got["voice.jitter.back"].status == "fail" and got["voice.jitter.back"].value == 45.0
    assert got["voice.mos.out"].status == "warn"
    assert got["voice.loss.back"].status == "pass" and got["voice.loss.back"].fix == ""


def test_a_wideband_stream_is_graded_on_the_narrowband_scale_and_says_so() -> None:
    wb = quality.emodel("G722", 90.0, 0.0).fields()  # R 113.2: MOS_CQEW 4.28, NB scale 4.5
    lossy = quality.emodel("G722", 90.0, 4.0).fields()  # R 73.7: MOS_CQEW 2.95, NB 3.77
    m = {
        "rtt_ms": {"median": 42.0}, "direction_loss_method": "reflector sequence counter",
        "out": {"source": "stream", "packets_sent": 500, "lost": 0, "loss_pct": 0.0,
                "jitter_ms": 1.0, **wb},
        "back": {"source": "stream", "packets_sent": 500, "lost": 40, "loss_pct": 8.0,
                 "jitter_ms": 1.0, **lossy},
    }  # fmt: skip
    got = {c.id: c for c in checks.voice_checks(m)}
    out, back = got["voice.mos.out"], got["voice.mos.back"]
    assert out.status == "pass" and out.value == pytest.approx(wb["mos_narrowband"])
    assert out.display is not None and out.display.startswith(f"{wb['mos']:.2f} wideband")
    assert "codec ceiling 4.34" in out.display and "4.50 on the narrowband scale" in out.display
    assert back.value == pytest.approx(lossy["mos_narrowband"])
    # as poor as a narrowband call at the same R: warn, where the raw MOS_CQEW would fail
    assert back.status == "warn" and lossy["mos"] < 3.6


def test_nat_binding_lost_before_30_s_fails_with_its_bounds() -> None:
    res = [
        IntervalResult(interval_s=2, survived=True),
        IntervalResult(interval_s=8, survived=False),
        IntervalResult(interval_s=30, survived=False),
    ]
    survived, lost = summarize(res)
    assert (survived, lost) == (2, 8)
    c = checks.nat_check({"survived_s": survived, "lost_s": lost, "intervals_s": [2, 8, 30]})
    assert c.status == "fail" and c.value == 8 and "2–8 s" in c.display
    assert "UDP session timeout" in c.fix


def test_bandwidth_below_80_percent_of_the_contract_fails() -> None:
    c = checks.bandwidth_check("down", 70e6, 100e6)
    assert c.status == "fail" and c.value == pytest.approx(70.0)
    assert checks.bandwidth_check("up", 90e6, 100e6).status == "pass"
    assert checks.bandwidth_check("up", 90e6, None).status == "info"


def test_verdict_is_the_worst_graded_status() -> None:
    def c(s: str) -> Check:
        return Check(id=s, group="g", name=s, status=s)  # type: ignore[arg-type]

    assert verdict([c("pass"), c("info"), c("skipped")]) == "pass"
    assert verdict([c("pass"), c("warn")]) == "warn"
    assert verdict([c("warn"), c("fail"), c("pass")]) == "fail"
    assert verdict([c("info")]) == "skipped"


def test_options_reject_unknown_groups_and_keys_by_name() -> None:
    with pytest.raises(ValueError, match="unknown check group 'voip'"):
        ReadinessOptions(responder="r", checks=["voip"])
    with pytest.raises(ValueError, match="max_calls"):
        ReadinessOptions(responder="r", calls=10, max_calls=5)
    with pytest.raises(ValueError, match="colour"):
        ReadinessOptions.model_validate({"responder": "r", "colour": 1})


def test_ramp_step_fails_when_a_queue_builds_before_any_loss() -> None:
    clean = {"source": "stream", "packets_sent": 150, "lost": 0, "jitter_ms": 1.0, "mos": 4.3}
    m = {"out": clean, "back": clean, "rtt_ms": {"p95": 75.0, "median": 40.0}}
    assert capacity.grade_step(4, [m], [], baseline_rtt_ms=30.0).ok
    full = {**m, "rtt_ms": {"p95": 95.0, "median": 70.0}}
    step = capacity.grade_step(5, [full], [], baseline_rtt_ms=30.0)
    assert not step.ok and "65 ms above one call's" in step.reason


def _failed(category: str, message: str) -> ProbeResult:
    return ProbeResult(
        probe="dns", target="pbx.example.net", started_at=utcnow(), duration_ms=3.0,
        success=False, error={"class": "ResolveError", "category": category, "message": message},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("category", "message"),
    [("dns", "pbx.example.net does not resolve (NXDOMAIN)"),
     ("timeout", "dns to pbx.example.net did not finish within 5 s")],
)  # fmt: skip
def test_a_check_failed_by_its_probe_says_what_the_error_category_means(
    category: str, message: str
) -> None:
    c = checks.result_failed("dns.sip", "dns", "DNS for the SIP domain", _failed(category, message),
                             "dns")  # fmt: skip
    assert c.status == "fail" and c.display == "no measurement"
    assert CATEGORY_MESSAGES[category] in c.explanation and f"({message})" in c.explanation
    meaning = CATEGORY_MESSAGES[category]
    assert c.details["error"] == {
        "class": "ResolveError", "category": category, "message": message, "meaning": meaning,
    }  # fmt: skip
    assert c.fix == checks.FIXES["dns"][1]


async def test_real_probe_failures_reach_the_voice_check_with_their_meaning() -> None:
    # Nothing listens on the discard port of loopback: the kernel answers port unreachable.
    refused = await run_probe("udp", "127.0.0.1:9", {"duration_s": 0.1, "wait_s": 0.2})
    slow = await run_probe("udp", "127.0.0.1:9", {"duration_s": 2.0},
                           ctx=ProbeContext(timeout_s=0.2))  # fmt: skip
    opts = ReadinessOptions(responder="127.0.0.1", checks=["voice"])
    for res, category in ((refused, "peer"), (slow, "timeout")):
        assert res.error is not None and res.error.category == category
        [c] = suite._voice(opts, res)
        assert c.id == "voice.stream" and c.status == "fail"
        assert c.explanation.endswith(f"{CATEGORY_MESSAGES[category]} ({res.error.message})")


def test_bandwidth_above_the_contract_is_met_never_a_percentage_over_100() -> None:
    c = checks.bandwidth_check("down", 250e6, 100e6)
    assert c.status == "pass" and c.value == 100.0
    assert c.display == "250.00 Mbit/s: the contracted 100 Mbit/s is met"


def test_bandwidth_on_a_path_that_is_not_the_line_is_labelled_not_graded() -> None:
    loop = PathFacts(responder_ip="127.0.0.1", not_meaningful=classify("127.0.0.1", "127.0.0.1"))
    c = checks.bandwidth_check("down", 32914.02e6, 100e6, loop)
    assert c.status == "info" and c.value is None
    assert c.display == (
        "32914.02 Mbit/s: not meaningful on this path (the responder is on this host (loopback))"
    )
    assert c.details["throughput_bps"] == 32914.02e6
    # a real address, but more than the interface can carry
    eth = PathFacts(responder_ip="192.0.2.1", interface="eth0", interface_mbps=1000.0)
    c = checks.bandwidth_check("up", 2400e6, 100e6, eth)
    assert c.status == "info" and "above the speed of eth0 (1000 Mbit/s)" in c.display
    assert checks.bandwidth_check("up", 90e6, 100e6, eth).status == "pass"


def test_path_classes() -> None:
    assert classify("127.0.0.1", "127.0.0.1") == "the responder is on this host (loopback)"
    assert classify("::1", "::1") == "the responder is on this host (loopback)"
    assert classify("::ffff:127.0.0.1", None) == "the responder is on this host (loopback)"
    assert classify("192.0.2.7", "192.0.2.7") == "the responder is on this host"
    assert classify("fe80::1%eth0", "fe80::2%eth0") == (
        "the responder is link-local (same network segment)"
    )
    assert classify("192.0.2.7", "198.51.100.2") is None


async def test_path_facts_on_loopback_name_the_loopback_interface() -> None:
    facts = await path_facts("127.0.0.1")
    assert facts.responder_ip == "127.0.0.1" and facts.interface == "lo"
    assert facts.not_meaningful == "the responder is on this host (loopback)"
    assert (await path_facts("no-such-host.invalid")).not_meaningful is None


async def test_mtu_inside_the_host_or_above_any_wan_is_not_a_finding() -> None:
    async def mtu(mtu_bytes: int) -> ProbeCall:
        async def call(kind: str, target: str, options: dict[str, Any]) -> ProbeResult:
            return ProbeResult(probe="mtu", target=target, started_at=utcnow(), duration_ms=1.0,
                               success=True, measurement={"path_mtu": mtu_bytes,
                                                          "local_mtu": mtu_bytes})  # fmt: skip

        return call

    opts = ReadinessOptions(responder="127.0.0.1")
    loop = await path_facts("127.0.0.1")
    [c] = await net_checks.mtu_checks(opts, await mtu(65535), loop)
    assert c.status == "info" and c.display.startswith("65535 B: not meaningful on this path")
    [c] = await net_checks.mtu_checks(opts, await mtu(65535), PathFacts())
    assert c.status == "info" and "larger than any WAN carries (9216 B)" in c.display
    [c] = await net_checks.mtu_checks(opts, await mtu(1400), PathFacts())
    assert c.status == "warn" and c.value == 1400.0
