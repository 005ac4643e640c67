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
from typing import Annotated, Any

import msgspec
import yaml
from msgspec import Meta

from agent.errors import ConfigError
from agent.probes import get_probe
from agent.runtime.contract import parse_modules
from agent.wire.lite import ModuleConfig
from agent.wire.structs import StructError, describe, validate

DEFAULT_STATE_DIR = Path("/var/lib/qos-scout")
DEFAULT_CONFIG_PATH = Path("/etc/qos-scout/agent.yml")
GATEWAY = "$gateway"
_PLACEHOLDER = re.compile(r"\$(responder|sip_server|gateway)\b")


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A section of the file: unknown keys are refused."""


class CollectorConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """Where results go, and where the agent's key is kept."""

    url: str | None = None
    credentials_file: Path = DEFAULT_STATE_DIR / "agent.json"
    timeout_s: Annotated[float, Meta(gt=0, le=300)] = 15.0
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.url is not None:
            if not re.match(r"^https?://[^/\s]+", self.url):
                raise ValueError(f"@url: {self.url!r} is not an http:// or https:// URL")
            self.url = self.url.rstrip("/") or self.url


class SiteConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """Facts about the site the default modules and `$placeholders` use."""

    responder: str | None = None
    sip_server: str | None = None


class SpoolConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    path: Path = DEFAULT_STATE_DIR / "spool.db"
    max_mb: Annotated[float, Meta(gt=0)] = 64.0
    max_age_h: Annotated[float, Meta(gt=0)] = 168.0
    max_rejected: Annotated[int, Meta(ge=0, le=100_000)] = 1000


class ShippingConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    batch_size: Annotated[int, Meta(ge=1, le=5000)] = 200
    interval_s: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    # A result waits up to this long for others to share its request (failed probes and
    # job results do not wait): the default schedule then ships about once a minute.
    max_delay_s: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    backoff_initial_s: Annotated[float, Meta(gt=0)] = 1.0
    backoff_max_s: Annotated[float, Meta(gt=0)] = 300.0
    bisect_after: Annotated[int, Meta(ge=1, le=100)] = 3
    quarantine_after: Annotated[int, Meta(ge=1, le=100)] = 3

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be below backoff_initial_s")


class JobsConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    wait_s: Annotated[float, Meta(ge=1, le=60)] = 60.0


class MetricsConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """The local `/metrics` endpoint; off unless `port` is set."""

    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    address: str = "127.0.0.1"


class SchedulerConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    concurrency: Annotated[int, Meta(ge=1, le=64)] = 4
    # Cap on the random offset of each module's first run (None: anywhere in its interval).
    first_run_within_s: Annotated[float, Meta(ge=0)] | None = None
    shutdown_flush_s: Annotated[float, Meta(ge=0, le=300)] = 5.0


class CentralConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """The schedule kept at the collector (probe profiles): fetched every `interval_s` with
    an ETag and applied without a restart. Modules of this file's `modules:` section win
    over central modules of the same name (they are pinned locally)."""

    enabled: bool = True
    interval_s: Annotated[float, Meta(ge=1, le=3600)] = 60.0


class PhoneConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """A phone (or a network of phones) whose call reports the agent takes: by `address`
    (an address or a network in CIDR notation) and/or `account` (the SIP URI the phone
    reports as its LocalID, e.g. `sip:1001@pbx.example.com`); both must match when both
    are given. `name` becomes the results' module."""

    name: Annotated[
        str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    address: str | None = None
    account: Annotated[str, Meta(min_length=1, max_length=256)] | None = None

    def __post_init__(self) -> None:
        if self.address is not None:
            try:
                self.address = str(ipaddress.ip_network(self.address, strict=False))
            except ValueError:
                raise ValueError(
                    f"@address: {self.address!r} is not an address or a network (10.1.2.0/24)"
                ) from None
        if self.address is None and self.account is None:
            raise ValueError("a phone needs an address or an account")


class CallReportsConfig(_Strict, kw_only=True, forbid_unknown_fields=True):
    """The SIP listener for phones' RFC 6035 call reports; off unless `port` is set."""

    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    address: str = "0.0.0.0"
    phones: Annotated[list[PhoneConfig], Meta(max_length=10_000)] = msgspec.field(
        default_factory=list
    )
    max_per_minute: Annotated[int, Meta(ge=1, le=100_000)] = 600

    def __post_init__(self) -> None:
        if self.port is not None and not self.phones:
            raise ValueError("phones: name at least one phone to take reports from")


class AgentConfig(_Strict, kw_only=True, forbid_unknown_fields=True, dict=True):
    """The whole file. `modules` is None until `parse_config` fills it (from the file's
    `modules:` section, each module checked on its own, or from `default_modules`)."""

    collector: CollectorConfig = msgspec.field(default_factory=CollectorConfig)
    site: SiteConfig = msgspec.field(default_factory=SiteConfig)
    spool: SpoolConfig = msgspec.field(default_factory=SpoolConfig)
    shipping: ShippingConfig = msgspec.field(default_factory=ShippingConfig)
    jobs: JobsConfig = msgspec.field(default_factory=JobsConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)
    central: CentralConfig = msgspec.field(default_factory=CentralConfig)
    call_reports: CallReportsConfig = msgspec.field(default_factory=CallReportsConfig)
    modules: dict[str, ModuleConfig] | None = None

    @property
    def pinned(self) -> dict[str, ModuleConfig]:
        """The modules this file states itself: they win over central ones of that name."""
        # `_default_modules` (set by parse_config): `modules` came from default_modules()
        default = getattr(self, "_default_modules", False)
        return {} if default else dict(self.modules or {})

    def enabled_modules(self) -> dict[str, ModuleConfig]:
        return {k: m for k, m in (self.modules or {}).items() if m.enabled}


def _path_hook(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError


def section(data: Any, kind: type[Any], prefix: str = "") -> Any:
    """`data` as the config Struct `kind`; StructError names the key."""
    try:
        return msgspec.convert(data, kind, strict=False, dec_hook=_path_hook)
    except msgspec.ValidationError as exc:
        raise StructError(describe(exc, prefix=prefix, data=data, kind=kind)) from None


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
        cfg = section({k: v for k, v in data.items() if k != "modules"}, AgentConfig)
        if data.get("modules") is not None:
            cfg.modules = parse_modules(data["modules"])
    except StructError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    defaults = cfg.modules is None
    if defaults:
        built = default_modules(cfg.site)
        cfg.modules = {k: validate(v, ModuleConfig) for k, v in built.items()}
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
