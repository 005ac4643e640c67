"""Agent configuration: a YAML file of named probe modules with defaults, validated at load.

Unknown keys and bad values are refused with a message naming the file and the key
(`agent.yml: modules.voice.interval_s: Input should be greater than or equal to 10`).
Targets may use `$responder`, `$sip_server` (from the `site` section, substituted at load)
and `$gateway` (the host's default gateway, looked up when the module runs).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.errors import ConfigError
from agent.probes import get_probe
from agent.wire.errors import format_validation_error
from agent.wire.profiles import ModuleConfig

DEFAULT_STATE_DIR = Path("/var/lib/qos-scout")
DEFAULT_CONFIG_PATH = Path("/etc/qos-scout/agent.yml")
GATEWAY = "$gateway"
_PLACEHOLDER = re.compile(r"\$(responder|sip_server|gateway)\b")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectorConfig(_Strict):
    """Where results go, and where the agent's key is kept."""

    url: str | None = None
    credentials_file: Path = DEFAULT_STATE_DIR / "agent.json"
    timeout_s: float = Field(default=15.0, gt=0, le=300)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v.rstrip("/") if v else v


class SiteConfig(_Strict):
    """Facts about the site the default modules and `$placeholders` use."""

    responder: str | None = None
    sip_server: str | None = None


class SpoolConfig(_Strict):
    path: Path = DEFAULT_STATE_DIR / "spool.db"
    max_mb: float = Field(default=64.0, gt=0)
    max_age_h: float = Field(default=168.0, gt=0)
    max_rejected: int = Field(default=1000, ge=0, le=100_000)


class ShippingConfig(_Strict):
    batch_size: int = Field(default=200, ge=1, le=5000)
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    # A result waits up to this long for others to share its request (failed probes and
    # job results do not wait): the default schedule then ships about once a minute.
    max_delay_s: float = Field(default=60.0, ge=0, le=3600)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    bisect_after: int = Field(default=3, ge=1, le=100)
    quarantine_after: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _order(self) -> ShippingConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be below backoff_initial_s")
        return self


class JobsConfig(_Strict):
    enabled: bool = True
    wait_s: float = Field(default=60.0, ge=1, le=60)


class MetricsConfig(_Strict):
    """The local `/metrics` endpoint; off unless `port` is set."""

    port: int | None = Field(default=None, ge=1, le=65535)
    address: str = "127.0.0.1"


class SchedulerConfig(_Strict):
    concurrency: int = Field(default=4, ge=1, le=64)
    # Cap on the random offset of each module's first run (None: anywhere in its interval).
    first_run_within_s: float | None = Field(default=None, ge=0)
    shutdown_flush_s: float = Field(default=5.0, ge=0, le=300)


class CentralConfig(_Strict):
    """The schedule kept at the collector (probe profiles): fetched every `interval_s` with
    an ETag and applied without a restart. Modules of this file's `modules:` section win
    over central modules of the same name (they are pinned locally)."""

    enabled: bool = True
    interval_s: float = Field(default=60.0, ge=1, le=3600)


class PhoneConfig(_Strict):
    """A phone (or a network of phones) whose call reports the agent takes: by `address`
    (an address or a network in CIDR notation) and/or `account` (the SIP URI the phone
    reports as its LocalID, e.g. `sip:1001@pbx.example.com`); both must match when both
    are given. `name` becomes the results' module."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str | None = None
    account: str | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("address")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an address or a network (10.1.2.0/24)") from None

    @model_validator(mode="after")
    def _some_key(self) -> PhoneConfig:
        if self.address is None and self.account is None:
            raise ValueError("a phone needs an address or an account")
        return self


class CallReportsConfig(_Strict):
    """The SIP listener for phones' RFC 6035 call reports; off unless `port` is set."""

    port: int | None = Field(default=None, ge=1, le=65535)
    address: str = "0.0.0.0"
    phones: list[PhoneConfig] = Field(default_factory=list, max_length=10_000)
    max_per_minute: int = Field(default=600, ge=1, le=100_000)

    @model_validator(mode="after")
    def _phones_when_on(self) -> CallReportsConfig:
        if self.port is not None and not self.phones:
            raise ValueError("phones: name at least one phone to take reports from")
        return self


class AgentConfig(_Strict):
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    site: SiteConfig = Field(default_factory=SiteConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    shipping: ShippingConfig = Field(default_factory=ShippingConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    central: CentralConfig = Field(default_factory=CentralConfig)
    call_reports: CallReportsConfig = Field(default_factory=CallReportsConfig)
    modules: dict[str, ModuleConfig] | None = None
    # True when `modules` came from default_modules() (the file has no `modules:` section).
    _default_modules: bool = PrivateAttr(default=False)

    @property
    def pinned(self) -> dict[str, ModuleConfig]:
        """The modules this file states itself: they win over central ones of that name."""
        return {} if self._default_modules else dict(self.modules or {})

    def enabled_modules(self) -> dict[str, ModuleConfig]:
        return {k: m for k, m in (self.modules or {}).items() if m.enabled}


def default_modules(site: SiteConfig) -> dict[str, dict[str, Any]]:
    """The schedule a site gets when its file has no `modules` section."""
    mods: dict[str, dict[str, Any]] = {}
    ping = [GATEWAY] + (["$responder"] if site.responder else [])
    mods["ping"] = {"probe": "icmp", "targets": ping, "interval_s": 60}
    mods["host"] = {"probe": "host", "targets": ["local"], "interval_s": 300}
    if site.responder:
        mods["voice"] = {
            "probe": "udp",
            "targets": ["$responder"],
            "interval_s": 300,
            "options": {"codec": "G711_PLC", "duration_s": 30},
        }
        mods["bandwidth"] = {"probe": "bandwidth", "targets": ["$responder"], "interval_s": 28800}
        mods["trace"] = {"probe": "trace", "targets": ["$responder"], "on_loss": {}}
    if site.sip_server:
        mods["sip"] = {"probe": "sip_options", "targets": ["$sip_server"], "interval_s": 60}
    return mods


def load_config(path: Path | str, *, check_probes: bool = True) -> AgentConfig:
    """Read, validate and resolve `path`; raise ConfigError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    return parse_config(data, source=str(path), base_dir=path.parent, check_probes=check_probes)


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_probes: bool = True,
) -> AgentConfig:
    """Validate a config mapping; relative paths are taken from `base_dir`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must be a mapping of sections, not {type(data).__name__}"
        )
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    defaults = cfg.modules is None
    if defaults:
        built = default_modules(cfg.site)
        cfg.modules = {k: ModuleConfig.model_validate(v) for k, v in built.items()}
        if check_probes:  # a default module whose probe kind is not installed is left out
            cfg.modules = {k: m for k, m in cfg.modules.items() if _probe_known(m.probe)}
    if base_dir is not None:
        cfg.collector.credentials_file = base_dir / cfg.collector.credentials_file
        cfg.spool.path = base_dir / cfg.spool.path
    assert cfg.modules is not None
    cfg._default_modules = defaults
    resolve_modules(cfg.modules, cfg.site, source, check_probes=check_probes)
    return cfg


def resolve_modules(
    modules: dict[str, ModuleConfig], site: SiteConfig, source: str, *, check_probes: bool = True
) -> dict[str, ModuleConfig]:
    """Substitute the site's `$placeholders` in the targets and check each module's probe kind
    and options against the installed probes (in place); ConfigError names the key."""
    for name, mod in modules.items():
        mod.targets = [
            _substitute(t, site, f"{source}: modules.{name}.targets") for t in mod.targets
        ]
        if check_probes:
            _check_probe(mod, f"{source}: modules.{name}")
    return modules


def _probe_known(name: str) -> bool:
    try:
        get_probe(name)
    except ConfigError:
        return False
    return True


def _check_probe(mod: ModuleConfig, where: str) -> None:
    try:
        spec = get_probe(mod.probe)
    except ConfigError as exc:
        raise ConfigError(f"{where}.probe: {exc.message}") from None
    try:
        spec.parse_options(mod.options)
    except ConfigError as exc:
        raise ConfigError(f"{where}.options: {exc.message}") from None


def _substitute(target: str, site: SiteConfig, where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "gateway":
            if target != GATEWAY:
                raise ConfigError(
                    f"{where}: $gateway must be the whole target, not part of {target!r}"
                )
            return GATEWAY
        value = getattr(site, key)
        if not value:
            raise ConfigError(f"{where}: {target!r} uses ${key} but site.{key} is not set")
        return str(value)

    return _PLACEHOLDER.sub(repl, target)
