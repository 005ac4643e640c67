"""Threshold rules: defaults from VoIP-readiness limits, overrides, and pure evaluation.

A rule reads one measurement field by dotted path (`out.mos`, `rtt_ms.avg`) of the results
of the probes it names, and answers a level: `ok`, `warning`, `critical`, or None when the
result does not carry the field (absent fields never trip nor clear anything).

The path is checked when the rule is built (built-in, config file, partner or site
override alike) against the measurement model of every probe it names
(`agent.wire.measurements`): a rule that reads a field no probe produces is refused with
the rule, the probe and the field named, so it can never sit silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.wire.errors import format_validation_error
from agent.wire.measurements import MEASUREMENTS, PROBE_KINDS, FieldPathError, resolve_number

Level = Literal["ok", "warning", "critical"]
Op = Literal["above", "below", "failed", "below_pct_of_contracted", "silent", "present"]
SEVERITY_RANK = {"ok": 0, "warning": 1, "critical": 2}


class Rule(BaseModel):
    """One threshold. `warning`/`critical` are limits in the field's unit (percent of the
    contracted speed for `below_pct_of_contracted`, seconds of silence for `silent`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    description: str = ""
    probes: list[str] = Field(default_factory=list)
    field: str | None = None
    op: Op
    warning: float | None = None
    critical: float | None = None
    severity: Literal["warning", "critical"] = "critical"
    contracted: Literal["down", "up"] | None = None
    trip_after: int = Field(default=3, ge=1)
    clear_after: int = Field(default=3, ge=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        for probe in self.probes:
            if probe not in MEASUREMENTS:
                raise ValueError(f"unknown probe {probe!r} (known: {', '.join(PROBE_KINDS)})")
        if self.field is not None:
            for probe in self.probes:
                try:
                    resolve_number(probe, self.field)
                except FieldPathError as exc:
                    raise ValueError(f"field {self.field!r}: {exc}") from None
        if self.op == "present" and not (self.field and self.probes):
            raise ValueError("op 'present' needs a field and the probes it applies to")
        if self.op in ("above", "below", "below_pct_of_contracted"):
            if not self.field:
                raise ValueError(f"op {self.op!r} needs a field")
            if self.warning is None and self.critical is None:
                raise ValueError(f"op {self.op!r} needs a warning or a critical limit")
            if not self.probes:
                raise ValueError(f"op {self.op!r} needs the probes it applies to")
        if self.op == "below_pct_of_contracted" and self.contracted is None:
            raise ValueError("op 'below_pct_of_contracted' needs contracted: down or up")
        if self.op == "failed" and not self.probes:
            raise ValueError("op 'failed' needs the probes it applies to")
        if self.op == "silent" and self.critical is None and self.warning is None:
            raise ValueError("op 'silent' needs a limit in seconds (critical)")
        return self


def _r(**kw: Any) -> Rule:
    return Rule.model_validate(kw)


VOICE = ["udp", "sip_call", "call_report"]


def default_rules(silent_after_s: float = 600.0) -> dict[str, Rule]:
    """The built-in rules; limits follow common VoIP-readiness tests (see docs/collector.md)."""
    rules = [
        _r(id="rtt", description="round-trip time too high", probes=["icmp", "udp"],
           field="rtt_ms.avg", op="above", warning=150, critical=300),
        _r(id="jitter", description="ping jitter too high", probes=["icmp"],
           field="jitter_ms", op="above", warning=30, critical=50),
        _r(id="jitter_out", description="jitter towards the far end too high", probes=VOICE,
           field="out.jitter_ms", op="above", warning=30, critical=50),
        _r(id="jitter_back", description="jitter from the far end too high", probes=VOICE,
           field="back.jitter_ms", op="above", warning=30, critical=50),
        _r(id="loss", description="ping loss too high", probes=["icmp"],
           field="loss_pct", op="above", warning=1, critical=5),
        _r(id="loss_out", description="loss towards the far end too high", probes=VOICE,
           field="out.loss_pct", op="above", warning=1, critical=5),
        _r(id="loss_back", description="loss from the far end too high", probes=VOICE,
           field="back.loss_pct", op="above", warning=1, critical=5),
        # A wideband MOS is compared on the narrowband scale (comparable_path below).
        _r(id="mos_out", description="voice quality (MOS) towards the far end too low",
           probes=VOICE, field="out.mos", op="below", warning=4.0, critical=3.6),
        _r(id="mos_back", description="voice quality (MOS) from the far end too low",
           probes=VOICE, field="back.mos", op="below", warning=4.0, critical=3.6),
        _r(id="sip_options", description="SIP server not answering OPTIONS",
           probes=["sip_options"], op="failed", severity="critical"),
        _r(id="sip_options_rtt", description="SIP server slow to answer OPTIONS",
           probes=["sip_options"], field="rtt_ms", op="above", warning=1000),
        _r(id="sip_registration", description="SIP registration failing",
           probes=["sip_register"], op="failed", severity="critical"),
        _r(id="sip_rrd", description="SIP registration slow (RFC 6076 RRD)",
           probes=["sip_register"], field="rrd_ms", op="above", warning=1000, critical=4000),
        _r(id="sip_call_setup", description="SIP call setup failing",
           probes=["sip_call"], op="failed", severity="critical"),
        _r(id="sip_srd", description="SIP call setup slow (RFC 6076 SRD)",
           probes=["sip_call"], field="srd_ms", op="above", warning=1000, critical=4000),
        _r(id="bandwidth_down", description="download below the contracted speed",
           probes=["bandwidth"], field="download.throughput_bps", op="below_pct_of_contracted",
           contracted="down", warning=80, critical=50),
        _r(id="bandwidth_up", description="upload below the contracted speed",
           probes=["bandwidth"], field="upload.throughput_bps", op="below_pct_of_contracted",
           contracted="up", warning=80, critical=50),
        _r(id="dns_failing", description="DNS resolution failing",
           probes=["dns"], op="failed", severity="warning"),
        _r(id="dns_slow", description="DNS resolution slow",
           probes=["dns"], field="resolution_ms", op="above", warning=500, critical=2000),
        _r(id="trace_loss", description="persistent loss on the path (trace)",
           probes=["trace"], field="loss_starts_at_hop", op="present", severity="warning"),
        _r(id="path_mtu", description="path MTU too small for SIP over UDP",
           probes=["mtu"], field="path_mtu", op="below", critical=1300),
        _r(id="nat_binding", description="UDP NAT binding expires too soon",
           probes=["nat_binding"], field="survived_s", op="below", critical=30),
        _r(id="host_cpu", description="agent host CPU saturated",
           probes=["host"], field="cpu_pct", op="above", warning=90, critical=98),
        _r(id="host_memory", description="agent host memory nearly full",
           probes=["host"], field="memory_used_pct", op="above", warning=90, critical=97),
        _r(id="agent_silent", description="agent has not reported", op="silent",
           critical=silent_after_s, trip_after=1, clear_after=1),
    ]  # fmt: skip
    return {r.id: r for r in rules}


def apply_overrides(base: Mapping[str, Rule], overrides: Mapping[str, Any]) -> dict[str, Rule]:
    """Patch known rules field by field; a new id must be a complete rule. Raises ValueError."""
    out = dict(base)
    if not isinstance(overrides, Mapping):
        raise ValueError("rule overrides must be a mapping of rule id to fields")
    for rid, patch in overrides.items():
        if not isinstance(patch, Mapping):
            raise ValueError(f"rule {rid!r}: override must be a mapping of fields")
        merged = {**out[rid].model_dump(), **patch} if rid in out else dict(patch)
        merged["id"] = rid
        try:
            out[rid] = Rule.model_validate(merged)
        except ValidationError as exc:
            problems = format_validation_error(exc, root=None, strip_value_error=True)
            raise ValueError(f"rule {rid!r}: {problems}") from None
    return out


def validate_overrides(overrides: Mapping[str, Any]) -> None:
    apply_overrides(default_rules(), overrides)


def effective_rules(base: Mapping[str, Rule], *layers: Mapping[str, Any] | None) -> dict[str, Rule]:
    """`base` (defaults with the config file's overrides), then each override layer in order
    (partner, site); empty layers change nothing."""
    rules = dict(base)
    for layer in layers:
        if layer:
            rules = apply_overrides(rules, layer)
    return rules


def field_value(measurement: Mapping[str, Any] | None, path: str) -> Any:
    cur: Any = measurement
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def comparable_path(measurement: Mapping[str, Any] | None, path: str) -> str:
    """The path a rule compares: a MOS on the wideband scale is read as its `mos_narrowband`.

    A wideband direction's `mos` (ITU-T G.107.1 MOS_CQEW) rates the same R lower than the
    narrowband scale the thresholds are written for, so it is compared through its
    narrowband-scale figure (docs/measurements.md); every other path is read as written.
    """
    parent_path, _, key = path.rpartition(".")
    if key != "mos":
        return path
    parent = field_value(measurement, parent_path) if parent_path else measurement
    if isinstance(parent, Mapping) and parent.get("scale") == "wideband":
        return f"{parent_path}.mos_narrowband" if parent_path else "mos_narrowband"
    return path


def _grade(value: float, rule: Rule, worse: Any) -> Level:
    if rule.critical is not None and worse(value, rule.critical):
        return "critical"
    if rule.warning is not None and worse(value, rule.warning):
        return "warning"
    return "ok"


def evaluate(
    rule: Rule,
    success: bool,
    measurement: Mapping[str, Any] | None,
    contracted_bps: Mapping[str, int | None] | None = None,
) -> tuple[Level | None, float | None]:
    """Level of one result under one rule, and the value read (None when not applicable)."""
    if rule.op == "failed":
        return ("ok" if success else rule.severity), None
    if rule.field is None or rule.op == "silent":
        return None, None
    if rule.op == "present":
        return _presence(rule, measurement)
    value = field_value(measurement, comparable_path(measurement, rule.field))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, None
    v = float(value)
    if rule.op == "above":
        return _grade(v, rule, lambda a, b: a > b), v
    if rule.op == "below":
        return _grade(v, rule, lambda a, b: a < b), v
    # below_pct_of_contracted
    speed = (contracted_bps or {}).get(rule.contracted or "")
    if not speed:
        return None, None
    pct = 100.0 * v / speed
    return _grade(pct, rule, lambda a, b: a < b), pct


def _presence(
    rule: Rule, measurement: Mapping[str, Any] | None
) -> tuple[Level | None, float | None]:
    """`present`: the rule's severity while the field holds a number, ok while it is null
    (e.g. trace's `loss_starts_at_hop`); None when the measurement lacks the field."""
    assert rule.field is not None
    parent_path, _, key = rule.field.rpartition(".")
    parent = field_value(measurement, parent_path) if parent_path else measurement
    if not isinstance(parent, Mapping) or key not in parent:
        return None, None
    value = parent[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "ok", None
    return rule.severity, float(value)


def inside_thresholds(
    rules: Mapping[str, Rule],
    probe: str,
    success: bool,
    measurement: Mapping[str, Any] | None,
    contracted_bps: Mapping[str, int | None] | None = None,
) -> bool:
    """A result is inside the thresholds when it succeeded and every enabled rule naming its
    probe reads `ok` of it (a rule whose field the result does not carry reads nothing and
    counts neither way). The warning limit is the threshold: a warning is outside."""
    if not success:
        return False
    for rule in rules.values():
        if rule.enabled and probe in rule.probes:
            level, _ = evaluate(rule, success, measurement, contracted_bps)
            if level not in (None, "ok"):
                return False
    return True


def silence_level(rule: Rule, silent_s: float) -> Level:
    return _grade(silent_s, rule, lambda a, b: a > b)
