"""The wire schema: versioned, UTC, units in names, unknown fields and versions refused."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from agent.wire.results import (
    SCHEMA_VERSION,
    ProbeErrorInfo,
    ProbeResult,
    finite_json,
    non_finite_path,
)


def _result(**kw: object) -> ProbeResult:
    base: dict[str, object] = {
        "probe": "icmp",
        "target": "192.0.2.1",
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "duration_ms": 12.5,
        "success": True,
        "measurement": {"loss_pct": 0.0, "rtt_ms": {"avg": 1.0}},
    }
    base.update(kw)
    return ProbeResult.model_validate(base)


def test_round_trip_json() -> None:
    r = _result()
    wire = r.to_json_dict()
    assert wire["schema_version"] == SCHEMA_VERSION
    assert uuid.UUID(wire["id"])
    assert wire["started_at"].endswith("Z")
    assert ProbeResult.model_validate(wire) == r


def test_error_is_spelt_class_on_the_wire() -> None:
    r = _result(
        success=False,
        error=ProbeErrorInfo(error_class="ResolveError", category="dns", message="nope"),
    )
    wire = r.to_json_dict()
    assert wire["error"] == {"class": "ResolveError", "category": "dns", "message": "nope"}
    assert ProbeResult.model_validate(wire).error == r.error


def test_started_at_is_normalised_to_utc_and_must_be_aware() -> None:
    r = _result(started_at=datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert r.started_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    with pytest.raises(ValidationError, match="must carry a timezone"):
        _result(started_at=datetime(2026, 1, 1))


def test_unknown_schema_version_is_refused_with_reason() -> None:
    with pytest.raises(ValidationError, match="schema_version 99 is not supported"):
        _result(schema_version=99)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        _result(surprise=1)


def test_negative_duration_refused() -> None:
    with pytest.raises(ValidationError, match="duration_ms"):
        _result(duration_ms=-1)


def test_finite_json_and_non_finite_path():
    doc = {"a": 1.5, "b": [math.inf, 2, {"c": math.nan}], "d": "x", "e": None}
    assert finite_json(doc) == {"a": 1.5, "b": [None, 2, {"c": None}], "d": "x", "e": None}
    assert non_finite_path(doc, "measurement") == "measurement.b.0"
    assert non_finite_path({"b": [1.0, {"c": -math.inf}]}, "m") == "m.b.1.c"
    assert non_finite_path(finite_json(doc), "m") is None
    assert non_finite_path(None, "m") is None


def test_result_ids_are_uuid7_ordered_by_the_time_they_were_made() -> None:
    from agent.wire import lite
    from agent.wire.plain import new_result_id

    made = [_result().id, lite.ProbeResult(
        probe="icmp", target="192.0.2.1", started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_ms=1.0, success=True).id]  # fmt: skip
    for rid in made:
        assert rid.version == 7 and rid.variant == uuid.RFC_4122
    # the first 48 bits are the Unix time in ms: ids of later milliseconds sort later
    t0 = 1_796_000_000_000
    ids = [new_result_id(t0 + ms) for ms in (0, 1, 2, 1000, 86_400_000)]
    assert ids == sorted(ids) and len({i.int >> 80 for i in ids}) == 5
    assert [i.int >> 80 for i in ids] == [t0, t0 + 1, t0 + 2, t0 + 1000, t0 + 86_400_000]
    # ids of one millisecond differ in their 74 random bits
    same = {new_result_id(t0) for _ in range(1000)}
    assert len(same) == 1000 and all(i.int >> 80 == t0 and i.version == 7 for i in same)
