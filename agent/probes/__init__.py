"""Probe framework: one async function per probe kind, a registry by name, and the runner.

A probe only measures: `async def probe(target, options, ctx) -> Measurement`. The runner
owns what every probe shares: the deadline, the start time, the duration, success and the
error reason. Probe modules are imported lazily (scapy and aiortc stay unloaded until a
probe that needs them runs).
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from agent.errors import ConfigError, ProbeError, ProbeTimeoutError
from agent.wire.lite import MEASUREMENTS, ProbeErrorInfo, ProbeResult, SummaryStats
from agent.wire.plain import finite_json, utcnow
from agent.wire.structs import StructError, validate

log = logging.getLogger(__name__)

# probe name -> module that registers it (imported on first use).
PROBE_MODULES: dict[str, str] = {
    "icmp": "agent.probes.icmp",
    "udp": "agent.probes.udp",
    "bandwidth": "agent.probes.bandwidth",
    "dns": "agent.probes.dns",
    "mtu": "agent.probes.mtu",
    "trace": "agent.probes.trace",
    "host": "agent.probes.host",
    "nat_binding": "agent.probes.nat_binding",
    "sip_options": "agent.probes.sip_options",
    "sip_register": "agent.probes.sip_register",
    "sip_call": "agent.probes.sip_call",
}

# A probe's options and measurement models are msgspec Structs (the default schedule's
# probes: no pydantic in an idle agent) or pydantic models (probes that run on demand).
OptionsT = TypeVar("OptionsT")


@dataclass(frozen=True)
class Target:
    """What a probe measures against: a host with an optional port, or a URI kept verbatim."""

    host: str
    port: int | None = None
    uri: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse `host`, `host:port`, `[v6]:port`, a bare IPv6 address or a `scheme:` URI."""
        text = text.strip()
        if not text:
            raise ConfigError("target is empty")
        if re.match(r"^(sips?|tel):", text, re.IGNORECASE):
            return cls(host=_uri_host(text), uri=text)
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ConfigError(f"target {text!r}: missing ']' after IPv6 address")
            host, rest = text[1:end], text[end + 1 :]
            if rest and not rest.startswith(":"):
                raise ConfigError(f"target {text!r}: expected ':port' after ']'")
            return cls(host=host, port=_port(text, rest[1:]) if rest else None)
        try:
            ipaddress.IPv6Address(text)
            return cls(host=text)
        except ValueError:
            pass
        if text.count(":") == 1:
            host, port = text.split(":")
            if not host:
                raise ConfigError(f"target {text!r}: host is empty")
            return cls(host=host, port=_port(text, port))
        return cls(host=text)

    def __str__(self) -> str:
        if self.uri:
            return self.uri
        if self.port is None:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _port(text: str, port: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"target {text!r}: port {port!r} is not a number from 1 to 65535")
    return int(port)


def _uri_host(uri: str) -> str:
    m = re.match(r"^[a-z]+:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>?]+)", uri, re.IGNORECASE)
    if not m:
        raise ConfigError(f"target {uri!r}: cannot find a host in this URI")
    return m.group(1).strip("[]")


def summary_stats(values: list[float]) -> SummaryStats:
    """The order statistics of `values` as measurements carry them."""
    from agent import quality

    return SummaryStats(**quality.summarize(values).as_dict())


@dataclass
class ProbeContext:
    """What the runner hands every probe: its deadline. (Whether a probe may use raw
    sockets it finds out by trying, or from its own options, as `icmp` does.)"""

    timeout_s: float

    def remaining(self, started: float) -> float:
        """Seconds left before the deadline, given the monotonic start time."""
        return max(0.0, self.timeout_s - (time.monotonic() - started))


ProbeFn = Callable[[Target, Any, ProbeContext], Awaitable[Any]]


@dataclass(frozen=True)
class ProbeSpec(Generic[OptionsT]):
    name: str
    fn: ProbeFn
    options_model: type[OptionsT]
    default_timeout_s: float
    measurement_model: type[Any]
    estimate_timeout: Callable[[OptionsT], float] | None = None

    def parse_options(self, options: Any) -> OptionsT:
        """`options` (a mapping, or an options model) as this probe's options model;
        ConfigError naming the probe and the key."""
        model: Any = self.options_model
        if isinstance(options, model):
            return options
        options = plain(options)
        if issubclass(model, msgspec.Struct):
            try:
                return validate(options or {}, model)
            except StructError as exc:
                raise ConfigError(f"{self.name} options: {exc}") from None
        from pydantic import ValidationError  # a probe that runs on demand

        from agent.wire.errors import format_validation_error

        try:
            return model.model_validate(options or {})
        except ValidationError as exc:
            raise ConfigError(f"{self.name} options: {format_validation_error(exc)}") from None

    def timeout_for(self, options: OptionsT) -> float:
        if self.estimate_timeout is not None:
            return self.estimate_timeout(options)
        return self.default_timeout_s


_REGISTRY: dict[str, ProbeSpec[Any]] = {}


def plain(model: Any) -> Any:
    """A Struct or a pydantic model as JSON-ready builtins (anything else as it is)."""
    if isinstance(model, msgspec.Struct):
        return msgspec.to_builtins(model)
    dump = getattr(model, "model_dump", None)
    return dump(mode="json", by_alias=True) if dump is not None else model


def register(
    name: str,
    options: type[OptionsT],
    *,
    timeout_s: float = 30.0,
    estimate_timeout: Callable[[OptionsT], float] | None = None,
    measurement: type[Any] | None = None,
) -> Callable[[ProbeFn], ProbeFn]:
    """Register `fn` as the probe `name` with its options model and default deadline.

    It returns the measurement model of `name` in the wire contract
    (`agent.wire.measurements.MEASUREMENTS`, as a Struct `agent.wire.lite.MEASUREMENTS`; a
    probe may return either); only a probe outside the contract (a test's)
    names its own with `measurement`.
    """
    model = measurement or MEASUREMENTS.get(name)
    if model is None:
        raise ValueError(f"probe {name!r} has no measurement model in agent.wire.measurements")

    def deco(fn: ProbeFn) -> ProbeFn:
        _REGISTRY[name] = ProbeSpec(name, fn, options, timeout_s, model, estimate_timeout)
        return fn

    return deco


def get_probe(name: str) -> ProbeSpec[Any]:
    """The registered probe `name`, importing its module on first use."""
    if name not in _REGISTRY:
        module = PROBE_MODULES.get(name)
        if module is None:
            known = ", ".join(sorted(PROBE_MODULES))
            raise ConfigError(f"unknown probe {name!r} (known: {known})")
        importlib.import_module(module)
    return _REGISTRY[name]


def probe_names() -> list[str]:
    return sorted(PROBE_MODULES)


def _error_info(exc: BaseException) -> ProbeErrorInfo:
    if isinstance(exc, ProbeError):
        return ProbeErrorInfo(
            error_class=type(exc).__name__, category=exc.category, message=exc.message
        )
    return ProbeErrorInfo(
        error_class=type(exc).__name__,
        category="internal",
        message=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
    )


async def run_probe(
    name: str,
    target: Target | str,
    options: Any = None,
    *,
    ctx: ProbeContext | None = None,
    module: str | None = None,
    job_id: str | None = None,
) -> ProbeResult:
    """Run one probe against one target under its deadline; never raises for probe failures.

    Unknown probe names and invalid options raise `ConfigError` (the caller's mistake);
    everything that goes wrong while measuring becomes a failed `ProbeResult`.
    """
    spec = get_probe(name)
    opts = spec.parse_options(options)
    tgt = target if isinstance(target, Target) else Target.parse(target)
    if ctx is None:
        ctx = ProbeContext(timeout_s=spec.timeout_for(opts))
    started_at = utcnow()
    t0 = time.monotonic()
    measurement: Any = None
    error: ProbeErrorInfo | None = None
    try:
        async with asyncio.timeout(ctx.timeout_s):
            measurement = await spec.fn(tgt, opts, ctx)
    except TimeoutError:
        error = _error_info(
            ProbeTimeoutError(f"{name} to {tgt} did not finish within {ctx.timeout_s:g} s")
        )
    except ProbeError as exc:
        error = _error_info(exc)
        measurement = exc.measurement
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in a probe must not kill the agent
        log.exception("probe %s to %s crashed", name, tgt)
        error = _error_info(exc)
    if measurement is not None and type(measurement).__name__ != spec.measurement_model.__name__:
        log.error("probe %s returned %s, not its %s", name, type(measurement).__name__,
                  spec.measurement_model.__name__)  # fmt: skip
        error = _error_info(
            TypeError(f"{name} returned {type(measurement).__name__}, not its measurement model")
        )
        measurement = None
    duration_ms = (time.monotonic() - t0) * 1000.0
    return ProbeResult(
        probe=name,
        target=str(tgt),
        module=module,
        started_at=started_at,
        duration_ms=duration_ms,
        success=error is None,
        error=error,
        measurement=finite_json(plain(measurement)) if measurement is not None else None,
        job_id=job_id,
    )


async def run_many(
    name: str,
    targets: list[Target | str],
    options: Any = None,
    *,
    concurrency: int = 8,
    module: str | None = None,
    job_id: str | None = None,
) -> list[ProbeResult]:
    """Run one probe against several targets at once, at most `concurrency` in flight."""
    sem = asyncio.Semaphore(concurrency)
    spec = get_probe(name)
    opts = spec.parse_options(options)

    async def one(t: Target | str) -> ProbeResult:
        async with sem:
            return await run_probe(name, t, opts, module=module, job_id=job_id)

    return list(await asyncio.gather(*(one(t) for t in targets)))
