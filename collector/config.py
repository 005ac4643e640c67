"""The collector's YAML config file: validated at load, unknown keys rejected by name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.wire.errors import format_validation_error

DEFAULT_DB_URL = "sqlite:///qos-scout-collector.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:8080"


class ConfigFileError(Exception):
    """The config file cannot be used; the message names the file and the bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Routed(_Model):
    """Whose ticket events a channel receives, said explicitly: `partners: [...]` (those
    partners' only) or `scope: operator` (every partner's, for the operator's own use)."""

    partners: list[str] | None = Field(default=None, min_length=1)
    scope: Literal["operator"] | None = None

    @model_validator(mode="after")
    def _routing(self) -> Self:
        if self.partners is None and self.scope is None:
            raise ValueError(
                "a channel must say whose ticket events it receives: `partners: [names]` "
                "(only those partners') or `scope: operator` (every partner's)"
            )
        if self.partners is not None and self.scope is not None:
            raise ValueError(
                "`partners` and `scope: operator` exclude each other: an operator channel "
                "receives every partner's events"
            )
        return self

    def takes(self, partner_name: str) -> bool:
        """Does this channel receive the events of this partner's tickets?"""
        return self.scope == "operator" or partner_name in (self.partners or ())


class WebhookChannel(_Routed):
    """POST a JSON document, signed with HMAC-SHA256 over a timestamp, the delivery id and
    the body (see notifiers.sign)."""

    type: Literal["webhook"]
    name: str = "webhook"
    url: str
    secret: str = ""
    timeout_s: float = Field(default=10.0, gt=0)


class SmtpChannel(_Routed):
    """Send a plain-text e-mail through an SMTP server."""

    type: Literal["email"]
    name: str = "email"
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class AlertmanagerChannel(_Routed):
    """Push alerts to Prometheus Alertmanager's v2 API (`POST /api/v2/alerts`)."""

    type: Literal["alertmanager"]
    name: str = "alertmanager"
    url: str
    timeout_s: float = Field(default=10.0, gt=0)


Channel = Annotated[WebhookChannel | SmtpChannel | AlertmanagerChannel, Field(discriminator="type")]


class OutboxConfig(_Model):
    """Delivery retries: exponential backoff from `retry_base_s`, capped at `retry_max_s`."""

    poll_interval_s: float = Field(default=1.0, gt=0)
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=50, ge=1)
    lease_s: float = Field(default=60.0, gt=0)


class LimitsConfig(_Model):
    """Request and ingest limits (docs/collector.md, "Limits").

    Bodies: `max_body_bytes` for the agents' routes (result batches after gzip decoding, job
    status with its report), `max_request_bytes` for every other route. Results: items per
    batch, how old and how far in the future `started_at` may be, how deep an item may
    nest. Cardinality: distinct targets per agent and series per partner in `latest` (what
    /metrics exposes)."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_items: int = Field(default=1000, ge=1)
    max_result_age_s: float = Field(default=400 * 86400.0, gt=0)
    max_result_future_s: float = Field(default=86400.0, ge=0)
    max_item_depth: int = Field(default=32, ge=4, le=256)
    max_targets_per_agent: int = Field(default=256, ge=1)
    max_series_per_partner: int = Field(default=100_000, ge=1)


class RetentionConfig(_Model):
    """What is kept and for how long (docs/collector.md, "Retention and roll-ups").

    Raw results are kept `raw_days` (a partner's `raw_retention_days` overrides it), the
    hourly and daily roll-ups `rollup_days`. Every `interval_s` the worker rolls up the
    hours (and days) closed for `grace_s` that have results not rolled up yet and creates
    the PostgreSQL partitions `partitions_ahead_days` ahead; every `expire_interval_s` it
    removes what is past its retention: whole partitions on PostgreSQL, batches of
    `delete_batch` rows on SQLite (one short transaction each), then gives back free pages
    beyond `sqlite_keep_free_pct` % of the file (incremental vacuum)."""

    raw_days: int = Field(default=30, ge=1, le=3650)
    rollup_days: int = Field(default=400, ge=1, le=36500)
    interval_s: float = Field(default=60.0, gt=0)
    grace_s: float = Field(default=120.0, ge=0)
    expire_interval_s: float = Field(default=3600.0, gt=0)
    delete_batch: int = Field(default=5000, ge=1)
    sqlite_keep_free_pct: float = Field(default=10.0, ge=0, le=100)
    partitions_ahead_days: int = Field(default=3, ge=2, le=60)


METRICS_TOKEN_ENV = "QOS_SCOUT_METRICS_TOKEN"


class MetricsConfig(_Model):
    """The operator's `/metrics` (every partner's series): scraped with
    `Authorization: Bearer <token>`, the token read from `token_file` (a Docker secret,
    say), else from the QOS_SCOUT_METRICS_TOKEN environment variable, else `token` here
    (the config file is then a secret). No token configured: `/metrics` answers 401 on the
    agents' port. `listen` adds a listener of its own that serves only `/metrics` (for a
    private interface; the token is required there too when one is configured).
    `cache_s` keeps a built scrape for that many seconds for the scrapes that follow (HA
    Prometheus pairs, several scrapers); 0: only scrapes that arrive while one is being
    built share it."""

    token_file: Path | None = None
    token: str | None = Field(default=None, min_length=16)
    listen: str | None = None
    cache_s: float = Field(default=0.0, ge=0, le=300)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    def scrape_token(self) -> str | None:
        """The configured token; ConfigFileError when `token_file` cannot be read or holds
        fewer than 16 characters."""
        if self.token_file is not None:
            try:
                text = self.token_file.read_text().strip()
            except OSError as exc:
                raise ConfigFileError(
                    f"metrics.token_file {self.token_file}: cannot read: {exc.strerror}"
                ) from None
            if len(text) < 16:
                raise ConfigFileError(
                    f"metrics.token_file {self.token_file}: the token must be at least 16 "
                    "characters"
                )
            return text
        env = os.environ.get(METRICS_TOKEN_ENV, "").strip()
        if env:
            if len(env) < 16:
                raise ConfigFileError(
                    f"{METRICS_TOKEN_ENV}: the token must be at least 16 characters"
                )
            return env
        return self.token


class MailConfig(_Model):
    """The SMTP server the portal's own e-mails (user invitations) go through, and the
    portal's public address their links point at (`portal_url`, e.g.
    https://support.example.com; a partner's custom domain replaces its host)."""

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from")
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    portal_url: str = Field(default="http://127.0.0.1:8080", pattern=r"^https?://[^/\s]+$")


class WebConfig(_Model):
    """The HTTP front (docs/collector.md, "Web hardening and rate limits"): whose
    X-Forwarded-For / X-Forwarded-Proto is believed, and the throttles of
    collector/api/security.py (per replica, in memory, no database query).

    `auth_failures_max` failed authentications (any 401: a wrong API key, a wrong web login)
    from one client address are allowed at once, refilled at `auth_failures_max` per
    `auth_failures_window_s`; beyond that the address gets 429 with Retry-After (credentials
    already seen working from it still pass). A partner's key (and each
    user's API token or web session, on its own) may make `partner_requests_per_s` requests
    a second with bursts of `partner_burst`. 0 turns a throttle off. At most `max_tracked`
    addresses and keys are remembered (least recently seen forgotten first)."""

    trusted_proxies: list[str] = Field(default_factory=list)
    auth_failures_max: int = Field(default=10, ge=0)
    auth_failures_window_s: float = Field(default=60.0, gt=0)
    partner_requests_per_s: float = Field(default=20.0, ge=0)
    partner_burst: int = Field(default=400, ge=1)
    max_tracked: int = Field(default=100_000, ge=100)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"
                ) from None
        return [i.strip() for i in v]


MASTER_KEYS_ENV = "QOS_SCOUT_MASTER_KEYS"


class ChannelsConfig(_Model):
    """Partners' own channels (docs/collector.md, "Partner channels"): PSA ticketing, chat
    and paging configured by each partner through the API.

    Their credentials are stored encrypted (Fernet) with the master keys: the environment
    variable QOS_SCOUT_MASTER_KEYS (comma-separated) if set, else `master_keys` here (the
    config file is then a secret). The first key encrypts, all of them decrypt;
    `qos-scout collector rotate-secrets` re-encrypts every stored secret with the first.
    Without a key partners cannot store a channel with credentials.

    The channels' URLs come from partners: only `https://` to public addresses is reached,
    unless the host is in `allow_hosts` (the operator's list: `http://` and private or
    loopback addresses allowed there); no redirect is followed, the requests of one
    delivery end within `timeout_s` together and an answer larger than
    `max_response_bytes` is refused. `portal_url` is the address of this collector's web
    pages, for the link back in every message."""

    master_keys: list[str] = Field(default_factory=list)
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=30)
    max_response_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_per_partner: int = Field(default=20, ge=1, le=1000)
    portal_url: str = "http://127.0.0.1:8080"

    def keys(self) -> list[str]:
        """The master keys in force: the environment's, else the config file's."""
        env = os.environ.get(MASTER_KEYS_ENV, "").strip()
        if env:
            return [k.strip() for k in env.split(",") if k.strip()]
        return list(self.master_keys)


class CollectorConfig(_Model):
    """Everything `qos-scout collector serve` reads from its config file."""

    db: str = DEFAULT_DB_URL
    listen: str = DEFAULT_LISTEN
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notifications: list[Channel] = Field(default_factory=list)
    flap_window_s: float = Field(default=3600.0, ge=0)
    silent_agent_timeout_s: float = Field(default=600.0, gt=0)
    silent_check_interval_s: float = Field(default=30.0, gt=0)
    # Agents older than this (or than the collector's own release) are listed as outdated.
    min_agent_version: str | None = Field(default=None, pattern=r"^\d+(\.\d+){0,3}$")
    token_ttl_s: float = Field(default=86400.0, gt=0)
    metrics_stale_after_s: float = Field(default=86400.0, gt=0)
    alertmanager_refresh_s: float = Field(default=60.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    mail: MailConfig | None = None  # invitations by e-mail (None: links shown, not sent)
    api_docs: bool = False  # serve /docs, /redoc and /openapi.json (off: 404)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("notifications")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"notification channel names must be unique: {', '.join(dup)}")
        return v

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from collector.rules import validate_overrides

        validate_overrides(v)
        return v

    @model_validator(mode="after")
    def _attempt_within_lease(self) -> CollectorConfig:
        # A delivery attempt must end within the outbox lease, or another replica takes the
        # row again while it runs (and the loop would hand it back untried: worker.py).
        for i, ch in enumerate(self.notifications):
            if ch.timeout_s >= self.outbox.lease_s:
                raise ValueError(
                    f"notifications.{i}.timeout_s ({ch.timeout_s:g} s) must be shorter than "
                    f"outbox.lease_s ({self.outbox.lease_s:g} s)"
                )
        # A partner channel's delivery (token, search, create, note) ends within timeout_s.
        if self.channels.timeout_s >= self.outbox.lease_s:
            raise ValueError(
                f"channels.timeout_s ({self.channels.timeout_s:g} s) must be shorter than "
                f"outbox.lease_s ({self.outbox.lease_s:g} s)"
            )
        return self


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); raises ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen {text!r} must be HOST:PORT")
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen {text!r}: port must be a number 0-65535")
    return host, int(port)


def parse_config(data: Any, source: str = "config") -> CollectorConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{source}: the top level must be a mapping")
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(
            f"{source}: {format_validation_error(exc, root=None, strip_value_error=True)}"
        ) from None


def load_config(path: str | Path | None) -> CollectorConfig:
    """Read and validate a YAML config file; `None` gives the defaults."""
    if path is None:
        return CollectorConfig()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigFileError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))
