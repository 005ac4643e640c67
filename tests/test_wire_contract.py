"""The typed contract between probes, rules and metrics holds: every probe kind has one
measurement model, every rule reads a number its probes produce, every declared series
belongs to a known family with its labels, and a broken declaration or rule is refused."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from agent.probes import PROBE_MODULES, get_probe
from agent.wire import lite
from agent.wire.exposition import FAMILIES, Gauge, Labels, check_declarations, series_of
from agent.wire.measurements import MEASUREMENTS, REPORT_KINDS, FieldPathError, resolve_number
from agent.wire.voice import (
    CallReportMeasurement,
    SipCallMeasurement,
    UdpMeasurement,
    VoiceDirection,
)
from collector.rules import default_rules


def test_every_probe_kind_has_a_measurement_model_and_returns_it() -> None:
    # A report kind (`call_report`) is made by the agent's listener, not run by a probe.
    assert set(PROBE_MODULES) == set(MEASUREMENTS) - REPORT_KINDS
    for name in PROBE_MODULES:  # the agent's Struct of the contract's model
        assert get_probe(name).measurement_model is lite.MEASUREMENTS[name]
        assert lite.MEASUREMENTS[name].__name__ == MEASUREMENTS[name].__name__


def test_voice_probes_share_one_direction_model_with_the_same_keys() -> None:
    for model in (UdpMeasurement, SipCallMeasurement, CallReportMeasurement):
        for key in ("out", "back"):
            assert key in model.model_fields
            assert resolve_number("udp", f"{key}.mos") is float
            ann = model.model_fields[key].annotation
            assert VoiceDirection in getattr(ann, "__args__", (ann,))


def test_every_default_rule_reads_a_number_of_each_probe_it_names() -> None:
    for rule in default_rules().values():
        for probe in rule.probes:
            assert probe in MEASUREMENTS, (rule.id, probe)
            if rule.field:
                assert resolve_number(probe, rule.field) in (int, float), (rule.id, probe)


def test_default_rules_cover_every_probe_kind() -> None:
    covered = {p for r in default_rules().values() for p in r.probes}
    assert covered == set(MEASUREMENTS)


def test_per_direction_voice_rules_exist_for_both_directions_and_figures() -> None:
    rules = default_rules()
    for figure in ("loss_pct", "jitter_ms", "mos"):
        for d in ("out", "back"):
            got = [r for r in rules.values() if r.field == f"{d}.{figure}"]
            assert got and set(got[0].probes) == {"udp", "sip_call", "call_report"}, (figure, d)


def test_declared_series_per_direction_for_the_voice_stream() -> None:
    got = {(s.dotted, s.family, s.labels) for s in series_of(UdpMeasurement)}
    for d in ("out", "back"):
        for fam in ("loss_pct", "jitter_ms", "mos", "r_factor"):
            assert (f"{d}.{fam}", fam, (("direction", d),)) in got
    assert ("loss_pct", "loss_pct", (("direction", "rtt"),)) in got
    assert ("rtt_ms.p95", "rtt_ms", (("stat", "p95"),)) in got


def test_every_family_is_declared_by_some_model() -> None:
    used = {s.family for m in MEASUREMENTS.values() for s in series_of(m)}
    assert used == set(FAMILIES)


def test_a_field_that_is_not_a_number_is_refused_with_the_nearest_one() -> None:
    with pytest.raises(FieldPathError) as exc:
        resolve_number("udp", "out")
    assert str(exc.value) == "the udp measurement has no number at 'out' (did you mean 'out.mos'?)"
    with pytest.raises(FieldPathError) as exc:
        resolve_number("sip_call", "out.moss")
    assert str(exc.value) == (
        "the sip_call measurement has no number at 'out.moss' (did you mean 'out.mos'?)"
    )


class _BadFamily(BaseModel):
    x: Annotated[float, Gauge("no_such_family")]


class _Inner(BaseModel):
    loss_pct: Annotated[float, Gauge("loss_pct")]


class _MissingLabel(BaseModel):
    inner: _Inner  # no Labels(direction=...): loss_pct would lack its label


class _ExtraLabel(BaseModel):
    inner: Annotated[_Inner, Labels(direction="out", codec="g711")]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_BadFamily, "p: field x names unknown family 'no_such_family'"),
        (_MissingLabel, "p: field inner.loss_pct gives labels () to 'loss_pct', which has "
                        "('direction',)"),
        (_ExtraLabel, "p: field inner.loss_pct gives labels ('codec', 'direction') to "
                      "'loss_pct', which has ('direction',)"),
    ],
)  # fmt: skip
def test_a_broken_declaration_is_refused(model: type[BaseModel], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_declarations({"p": model})
    assert str(exc.value) == message
