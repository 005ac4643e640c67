"""The agent's msgspec wire Structs (agent/wire/lite.py) against the pydantic models they are
generated from: the committed file is what the generator writes now, the captured results of
the default schedule (tests/data/results_default_mix.json) encode to the same JSON on both
sides and the lite encoding passes the collector's validation, and what pydantic refuses the
Structs refuse too."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from agent.wire import codegen, lite
from agent.wire.jobs import JobStatus, ProbeJobSpec
from agent.wire.measurements import MEASUREMENTS
from agent.wire.profiles import EffectiveConfig, ModuleConfig
from agent.wire.results import ProbeResult

CAPTURED = json.loads((Path(__file__).parent / "data" / "results_default_mix.json").read_text())
# the default schedule's fifth kind (a trace runs on loss, so the captured mix has none):
# two hops to a responder, the second losing a round
_HOP = {
    "ttl": 1,
    "address": "192.0.2.1",
    "other_addresses": [],
    "sent": 10,
    "received": 10,
    "loss_pct": 0.0,
    "rtt_ms": {"min": 0.4, "avg": 0.5, "max": 0.9},
    "is_destination": False,
}
CAPTURED.append({
    "schema_version": 2, "id": "5f0e8a7e-8b55-4f7c-9a7e-2f4f3c1d2e10", "probe": "trace",
    "target": "198.51.100.7", "module": "trace", "started_at": "2026-12-04T03:47:01.5+01:00",
    "duration_ms": 5230.1, "success": True, "error": None, "tags": {"on_loss": "voice"},
    "measurement": {"address": "198.51.100.7", "mode": "icmp", "rounds": 10, "reached": True,
                    "hops": [_HOP, {**_HOP, "ttl": 2, "address": "198.51.100.7", "received": 9,
                                    "loss_pct": 10.0, "rtt_ms": {"min": 1.2, "avg": None},
                                    "is_destination": True}],
                    "hop_count": 2, "loss_starts_at_hop": 2, "destination_loss_pct": 10.0},
})  # fmt: skip


def test_the_committed_structs_are_what_the_generator_writes() -> None:
    assert codegen.TARGET.read_text() == codegen.render(), (
        "agent/wire/lite.py is out of date: run python -m agent.wire.codegen"
    )


def _lite_json(item: dict[str, Any]) -> Any:
    r = msgspec.json.decode(json.dumps(item).encode(), type=lite.ProbeResult)
    if r.measurement is not None:  # the measurement, through its own Struct
        m = msgspec.convert(r.measurement, lite.MEASUREMENTS[r.probe])
        r.measurement = msgspec.to_builtins(m)
    return json.loads(msgspec.json.encode(r))


def _pydantic_json(item: dict[str, Any]) -> Any:
    r = ProbeResult.model_validate(item)
    if r.measurement is not None:
        m = MEASUREMENTS[r.probe].model_validate(r.measurement)
        r.measurement = m.model_dump(mode="json")
    return json.loads(r.model_dump_json(by_alias=True))


@pytest.mark.parametrize("item", CAPTURED, ids=[r["probe"] for r in CAPTURED])
def test_captured_results_encode_alike_and_pass_the_collectors_validation(item: dict) -> None:
    mine = _lite_json(item)
    assert mine == _pydantic_json(item)
    assert _pydantic_json(mine) == mine  # what the agent sends, as the collector reads it
    # and a result the agent builds itself, field by field, as the probes do
    r = msgspec.json.decode(json.dumps(item).encode(), type=lite.ProbeResult)
    fields = {f: getattr(r, f) for f in r.__struct_fields__}
    if r.measurement is not None:
        m = msgspec.convert(r.measurement, lite.MEASUREMENTS[r.probe])
        kind = type(m)
        m = kind(**{f: getattr(m, f) for f in m.__struct_fields__})
        fields["measurement"] = msgspec.to_builtins(m)
    built = lite.ProbeResult(**fields)
    assert json.loads(msgspec.json.encode(built)) == _pydantic_json(item)


def _bad(path: str, value: Any) -> tuple[str, Any]:
    return (path, value)


# (dotted path in a captured result, a value pydantic refuses there)
REFUSED = [
    ("probe", "Ping"), ("probe", ""), ("target", ""), ("target", "a\x01b"),
    ("target", "x" * 513), ("duration_ms", -1.0), ("duration_ms", "12"), ("success", "yes"),
    ("success", 1), ("schema_version", 7), ("schema_version", "2"),
    ("started_at", "2026-12-04T03:46:44"), ("started_at", "yesterday"), ("module", "m" * 129),
    ("job_id", "j" * 65), ("tags", {f"k{i}": "v" for i in range(33)}), ("tags", {"k": "v" * 257}),
    ("error", {"class": "X", "category": "probe"}), ("unknown_key", 1),
    ("measurement.sent", "ten"), ("measurement.rtt_ms", None), ("measurement.address", 5),
]  # fmt: skip


def _set(item: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(item)
    *parents, last = path.split(".")
    cur = out
    for p in parents:
        cur = cur[p]
    cur[last] = value
    return out


@pytest.mark.parametrize(("path", "value"), REFUSED, ids=[p for p, _ in REFUSED])
def test_both_refuse_what_the_contract_does_not_allow(path: str, value: Any) -> None:
    item = _set(CAPTURED[0], path, value)  # the icmp result
    with pytest.raises(ValidationError):
        _pydantic_json(item)
    with pytest.raises(msgspec.ValidationError):
        _lite_json(item)


CONFIG_DOCS = [
    (ModuleConfig, lite.ModuleConfig,
     {"probe": "icmp", "targets": ["a"], "interval_s": 60, "on_loss": {"loss_pct_over": 2}}),
    (ModuleConfig, lite.ModuleConfig, {"probe": "icmp", "targets": [], "interval_s": 60}),
    (ModuleConfig, lite.ModuleConfig, {"probe": "icmp", "targets": ["a"], "interval_s": 0.5}),
    (ModuleConfig, lite.ModuleConfig, {"probe": "icmp", "targets": ["a"], "interval_s": 60,
                                       "bogus": 1}),
    (EffectiveConfig, lite.EffectiveConfig, {"version": "", "central": True}),
    (EffectiveConfig, lite.EffectiveConfig, {"version": "v", "central": True,
                                             "layers": ["planet"]}),
    (ProbeJobSpec, lite.ProbeJobSpec, {"probe": "warp", "targets": ["a"]}),
    (ProbeJobSpec, lite.ProbeJobSpec, {"probe": "icmp", "targets": ["  "]}),
    (ProbeJobSpec, lite.ProbeJobSpec, {"probe": "call_report", "targets": ["a"]}),
    (JobStatus, lite.JobStatus, {"state": "done", "progress": 1.5}),
    (JobStatus, lite.JobStatus, {"state": "done", "schema_version": 9}),
]  # fmt: skip


@pytest.mark.parametrize(("model", "struct", "doc"), CONFIG_DOCS)
def test_profiles_and_jobs_are_refused_alike(model: Any, struct: Any, doc: dict) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(doc)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(doc, struct)


def test_a_good_profile_and_job_read_alike() -> None:
    cfg = {"version": "abc", "central": True, "layers": ["partner", "site"],
           "modules": {"ping": {"probe": "icmp", "targets": ["$gateway"], "interval_s": 60},
                       "tr": {"probe": "trace", "targets": ["r"], "on_loss": {}}}}  # fmt: skip
    a = EffectiveConfig.model_validate(cfg).model_dump(mode="json")
    b = msgspec.to_builtins(msgspec.convert(cfg, lite.EffectiveConfig))
    assert a == b
    spec = {"probe": "icmp", "targets": [" 192.0.2.1 "], "options": {"count": 3}}
    assert ProbeJobSpec.model_validate(spec).model_dump() == msgspec.to_builtins(
        msgspec.convert(spec, lite.ProbeJobSpec)
    )
