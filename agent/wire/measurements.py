"""The measurement model of every probe kind, and how a dotted field path resolves in it.

`MEASUREMENTS` is the contract between a probe (which returns that model), the collector's
rules (whose `field` must resolve to a number here) and its metrics (declared on the models,
see `exposition`). Adding a probe kind means adding its model here.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from agent.wire.exposition import check_declarations, series_of
from agent.wire.net import (
    BandwidthMeasurement,
    DnsMeasurement,
    HostMeasurement,
    IcmpMeasurement,
    MtuMeasurement,
    NatBindingMeasurement,
    TraceMeasurement,
)
from agent.wire.sip import SipOptionsMeasurement, SipRegisterMeasurement
from agent.wire.voice import CallReportMeasurement, SipCallMeasurement, UdpMeasurement

MEASUREMENTS: dict[str, type[BaseModel]] = {
    "icmp": IcmpMeasurement,
    "udp": UdpMeasurement,
    "bandwidth": BandwidthMeasurement,
    "dns": DnsMeasurement,
    "mtu": MtuMeasurement,
    "trace": TraceMeasurement,
    "host": HostMeasurement,
    "nat_binding": NatBindingMeasurement,
    "sip_options": SipOptionsMeasurement,
    "sip_register": SipRegisterMeasurement,
    "sip_call": SipCallMeasurement,
    "call_report": CallReportMeasurement,
}
PROBE_KINDS: tuple[str, ...] = tuple(sorted(MEASUREMENTS))
# Kinds that no probe runs: results an agent's listener makes of what others send it
# (`call_report`: phones' RFC 6035 reports). Jobs and profiles cannot schedule them.
REPORT_KINDS: frozenset[str] = frozenset({"call_report"})

check_declarations(MEASUREMENTS)


class FieldPathError(ValueError):
    """A dotted path that does not name a number in a probe's measurement."""


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    if get_origin(annotation) is typing.Annotated:
        return _strip_optional(get_args(annotation)[0])
    return annotation


def numeric_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted path in `model` that holds a number (int or float), in field order."""
    out: list[str] = []
    for name, info in model.model_fields.items():
        ann = _strip_optional(info.annotation)
        path = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += numeric_fields(ann, path + ".")
        elif ann in (int, float):
            out.append(path)
    return out


def resolve_number(probe: str, path: str) -> type:
    """The type (int or float) of the number at `path` in `probe`'s measurement.

    Raises FieldPathError naming the probe and the path, with the closest existing path.
    """
    model = MEASUREMENTS.get(probe)
    if model is None:
        raise FieldPathError(f"unknown probe {probe!r} (known: {', '.join(PROBE_KINDS)})")
    cur: type[BaseModel] = model
    parts = path.split(".")
    for i, part in enumerate(parts):
        info = cur.model_fields.get(part)
        if info is None:
            break
        ann = _strip_optional(info.annotation)
        last = i == len(parts) - 1
        if isinstance(ann, type) and issubclass(ann, BaseModel) and not last:
            cur = ann
            continue
        if last and ann in (int, float):
            return typing.cast(type, ann)
        break
    near = _closest(path, numeric_fields(model))
    hint = f" (did you mean {near!r}?)" if near else ""
    raise FieldPathError(f"the {probe} measurement has no number at {path!r}{hint}")


def _closest(path: str, candidates: list[str]) -> str | None:
    """The candidate nearest to `path`: by the whole path, else by its last part."""
    near = difflib.get_close_matches(path, candidates, n=1)
    if near:
        return near[0]
    leaf = path.rsplit(".", 1)[-1]
    leaves = {c.rsplit(".", 1)[-1]: c for c in reversed(candidates)}
    near = difflib.get_close_matches(leaf, list(leaves), n=1)
    return leaves[near[0]] if near else None


def exported_series(probe: str) -> list[Any]:
    """The metric series `probe`'s measurement declares (see `exposition.series_of`)."""
    return series_of(MEASUREMENTS[probe])
