"""Which measurement fields become Prometheus series: declared on the models themselves.

A numeric field marked `Gauge(family, **labels)` is exported as `qos_scout_<family>`; a
sub-model field marked `Labels(**labels)` adds labels to every gauge below it, and one
marked `Stats(family)` exports its order statistics (label `stat`). The collector
builds its metric families from these declarations (`series_of`), so a renamed field
renames its series and nothing reads a field by a hand-typed name. `FAMILIES` is the one
list of families with their help text and label names; a declaration whose labels differ
from its family's fails at import (`check_declarations`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel


@dataclass(frozen=True)
class Family:
    help: str
    labels: tuple[str, ...]


# name (without the qos_scout_ prefix) -> help and the labels after the result's own
FAMILIES: dict[str, Family] = {
    "rtt_ms": Family("Round-trip time", ("stat",)),
    "jitter_ms": Family("Jitter (rtt: of the round trip; out/back: RFC 3550 per direction)",
                        ("direction",)),
    "loss_pct": Family("Packet loss (rtt: round trip; out/back: per direction)", ("direction",)),
    "mos": Family("E-model MOS per direction", ("direction",)),
    "r_factor": Family("E-model R per direction", ("direction",)),
    "throughput_bps": Family("Throughput", ("direction",)),
    "sip_timing_ms": Family("SIP timings (RFC 6076)", ("metric",)),
    "dns_resolution_ms": Family("DNS resolution time", ()),
    "path_mtu_bytes": Family("Path MTU with DF set", ()),
    "trace_hops": Family("Hops to the destination", ()),
    "trace_loss_start_hop": Family("First hop of persistent loss (absent: none)", ()),
    "trace_destination_loss_pct": Family("Loss at the destination of the trace", ()),
    "host_cpu_pct": Family("CPU use of the agent's host", ()),
    "host_memory_used_pct": Family("Memory use of the agent's host", ()),
    "nat_binding_survived_seconds": Family("Longest idle time a UDP NAT binding survived", ()),
    "buffer_delay_pct": Family("RTT under load over idle RTT, RFC 6349 buffer delay",
                               ("direction",)),
}  # fmt: skip


@dataclass(frozen=True)
class Gauge:
    """Export this numeric field as `qos_scout_<family>` with these extra labels."""

    family: str
    labels: dict[str, str] = field(default_factory=dict)

    def __init__(self, family: str, **labels: str) -> None:
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "labels", labels)

    def __hash__(self) -> int:
        return hash((self.family, tuple(sorted(self.labels.items()))))


@dataclass(frozen=True)
class Labels:
    """Add these labels to every gauge declared inside this sub-model field."""

    labels: dict[str, str] = field(default_factory=dict)

    def __init__(self, **labels: str) -> None:
        object.__setattr__(self, "labels", labels)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.labels.items())))


@dataclass(frozen=True)
class Stats:
    """Export the order statistics `stats` of this sub-model field as `qos_scout_<family>`,
    one series per statistic (label `stat`)."""

    family: str
    stats: tuple[str, ...] = ("min", "avg", "median", "p95", "max")


@dataclass(frozen=True)
class Series:
    """One exported value: where it is read in a measurement and what it becomes."""

    path: tuple[str, ...]
    family: str
    labels: tuple[tuple[str, str], ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `X | None` or `Optional[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def series_of(model: type[BaseModel]) -> list[Series]:
    """Every series the model declares, depth first in field order."""
    return _walk(model, (), {})


def _walk(model: type[BaseModel], path: tuple[str, ...], labels: dict[str, str]) -> list[Series]:
    out: list[Series] = []
    for name, info in model.model_fields.items():
        here = (*path, name)
        for meta in info.metadata:
            if isinstance(meta, Gauge):
                lab = {**labels, **meta.labels}
                out.append(Series(here, meta.family, tuple(sorted(lab.items()))))
        sub = _submodel(info.annotation)
        for meta in info.metadata:
            if isinstance(meta, Stats) and sub is not None:
                for stat in meta.stats:
                    if stat not in sub.model_fields:
                        raise ValueError(f"{model.__name__}.{name} has no statistic {stat!r}")
                    lab = {**labels, "stat": stat}
                    out.append(Series((*here, stat), meta.family, tuple(sorted(lab.items()))))
        if sub is not None:
            extra: dict[str, str] = {}
            for meta in info.metadata:
                if isinstance(meta, Labels):
                    extra.update(meta.labels)
            out.extend(_walk(sub, here, {**labels, **extra}))
    return out


def check_declarations(models: dict[str, type[BaseModel]]) -> None:
    """Raise ValueError when a declared series names an unknown family or other labels."""
    for probe, model in models.items():
        for s in series_of(model):
            fam = FAMILIES.get(s.family)
            if fam is None:
                raise ValueError(f"{probe}: field {s.dotted} names unknown family {s.family!r}")
            have = tuple(sorted(k for k, _ in s.labels))
            if have != tuple(sorted(fam.labels)):
                raise ValueError(
                    f"{probe}: field {s.dotted} gives labels {have} to {s.family!r}, "
                    f"which has {tuple(sorted(fam.labels))}"
                )
