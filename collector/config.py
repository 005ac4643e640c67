"""The collector's YAML config file: validated at load, unknown keys rejected by name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.wire.errors import format_validation_error

DEFAULT_DB_URL = "sqlite:///qos-scout-collector.sqlite3"
DEFAULT_LISTEN = "127.0.0.1:8080"


class ConfigFileError(Exception):
    """The config file cannot be used; the message names the file and the bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookChannel(_Model):
    """POST a JSON document, signed with HMAC-SHA256 over the body."""

    type: Literal["webhook"]
    name: str = "webhook"
    url: str
    secret: str = ""
    timeout_s: float = Field(default=10.0, gt=0)
    partners: list[str] | None = None


class SmtpChannel(_Model):
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
    partners: list[str] | None = None


class AlertmanagerChannel(_Model):
    """Push alerts to Prometheus Alertmanager's v2 API (`POST /api/v2/alerts`)."""

    type: Literal["alertmanager"]
    name: str = "alertmanager"
    url: str
    timeout_s: float = Field(default=10.0, gt=0)
    partners: list[str] | None = None


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
    token_ttl_s: float = Field(default=86400.0, gt=0)
    metrics_stale_after_s: float = Field(default=86400.0, gt=0)
    alertmanager_refresh_s: float = Field(default=60.0, gt=0)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

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
