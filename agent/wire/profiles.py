"""Probe profiles: the module model both sides validate (an agent's local file and a profile
at the collector), how the partner -> customer -> site layers merge, the effective config an
agent fetches and the status it reports back.

A layer is `{"modules": {name: {...}}}`. Layers merge by module name, partner first, then
customer, then site: a module named in only one layer is taken as it is; a module named again
in a lower layer is updated field by field with the fields that layer sets (`probe`,
`targets`, `interval_s`, `on_loss`, `timeout_s`, `enabled` replace the inherited value;
`options` are merged key by key, a key set to null removing the inherited one). Setting
`interval_s` drops an inherited `on_loss` and the reverse (a module has exactly one). A
lower layer disables an inherited module with `enabled: false`. The merged modules are then
validated with `ModuleConfig`, the model of the agent's own `modules:` section.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.wire.errors import format_validation_error
from agent.wire.measurements import MEASUREMENTS, REPORT_KINDS

PROFILE_SCHEMA_VERSION = 1
Scope = Literal["partner", "customer", "site"]
SCOPES: tuple[Scope, ...] = ("partner", "customer", "site")
MODULE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
MAX_MODULES = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LossTrigger(_Strict):
    """Run a module against a target when another module saw loss to it."""

    loss_pct_over: float = Field(default=1.0, ge=0, le=100)
    cooldown_s: float = Field(default=900.0, ge=0)


class ModuleConfig(_Strict):
    """A named probe module: probe kind, options, targets, and when it runs."""

    probe: str = Field(min_length=1, max_length=64)
    targets: list[str] = Field(min_length=1, max_length=64)
    interval_s: float | None = Field(default=None, ge=1)
    on_loss: LossTrigger | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _when(self) -> ModuleConfig:
        if (self.interval_s is None) == (self.on_loss is None):
            raise ValueError("set exactly one of interval_s or on_loss")
        return self


class ModuleLayer(_Strict):
    """A module as one layer states it: only the fields the layer changes."""

    probe: str | None = Field(default=None, min_length=1, max_length=64)
    targets: list[str] | None = Field(default=None, min_length=1, max_length=64)
    interval_s: float | None = Field(default=None, ge=1)
    on_loss: LossTrigger | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    options: dict[str, Any] | None = None
    enabled: bool | None = None


class Profile(_Strict):
    """One layer: the modules a partner, a customer or a site states."""

    modules: dict[str, ModuleLayer] = Field(default_factory=dict, max_length=MAX_MODULES)

    @model_validator(mode="after")
    def _names(self) -> Profile:
        for name in self.modules:
            if not re.match(MODULE_NAME, name):
                raise ValueError(
                    f"module name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-'"
                )
        return self


class ProfileError(ValueError):
    """A profile, or the config it makes with the layers above it, is invalid; the message
    names the key (`modules.ping_gw.interval_s: Input should be ...`)."""


def parse_profile(data: Any) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc)) from None


def merge(layers: list[Profile]) -> dict[str, dict[str, Any]]:
    """The modules the layers make, top layer first (see the module's docstring)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, mod in layer.modules.items():
            given = mod.model_dump(exclude_unset=True, mode="json")
            base = out.get(name, {})
            merged = {**base, **{k: v for k, v in given.items() if k != "options"}}
            if "interval_s" in given and "on_loss" not in given:
                merged.pop("on_loss", None)
            if "on_loss" in given and "interval_s" not in given:
                merged.pop("interval_s", None)
            if "options" in given:
                opts = {**base.get("options", {}), **(given["options"] or {})}
                merged["options"] = {k: v for k, v in opts.items() if v is not None}
            out[name] = {k: v for k, v in merged.items() if v is not None}
    return out


def validate_modules(modules: dict[str, dict[str, Any]]) -> dict[str, ModuleConfig]:
    """Merged modules as `ModuleConfig`s, their probe kinds checked against the contract's
    (`MEASUREMENTS`); ProfileError names the first bad key of each module."""
    problems: list[str] = []
    out: dict[str, ModuleConfig] = {}
    for name, data in modules.items():
        try:
            out[name] = ModuleConfig.model_validate(data)
        except ValidationError as exc:
            problems.append(
                format_validation_error(exc, prefix=f"modules.{name}.", strip_value_error=True)
            )
            continue
        if out[name].probe in REPORT_KINDS:
            problems.append(
                f"modules.{name}.probe: {out[name].probe!r} results come from phones' "
                "reports (the agent's call_reports section), not from a module"
            )
        elif out[name].probe not in MEASUREMENTS:
            known = ", ".join(sorted(set(MEASUREMENTS) - REPORT_KINDS))
            problems.append(
                f"modules.{name}.probe: unknown probe {out[name].probe!r} (known: {known})"
            )
    if problems:
        raise ProfileError("; ".join(problems))
    return out


def config_version(modules: dict[str, ModuleConfig]) -> str:
    """The version of an effective config: a hash of its canonical JSON (also its ETag)."""
    doc = {n: m.model_dump(mode="json") for n, m in sorted(modules.items())}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class EffectiveConfig(_Strict):
    """What `GET /api/v1/agent/config` answers: the merged modules of the agent's partner,
    customer and site profiles. `central` is false when none of them has a profile (the
    agent then runs its local schedule)."""

    schema_version: int = PROFILE_SCHEMA_VERSION
    version: str = Field(min_length=1, max_length=64)
    central: bool
    layers: list[Scope] = Field(default_factory=list)
    modules: dict[str, ModuleConfig] = Field(default_factory=dict, max_length=MAX_MODULES)

    @classmethod
    def parse(cls, data: Any) -> EffectiveConfig:
        """Validate an answer; ProfileError names the bad key or the unknown version."""
        if isinstance(data, dict) and data.get("schema_version") != PROFILE_SCHEMA_VERSION:
            raise ProfileError(
                f"schema_version: {data.get('schema_version')!r} is not a config version this "
                f"agent knows ({PROFILE_SCHEMA_VERSION})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ProfileError(format_validation_error(exc)) from None


class ConfigReport(_Strict):
    """What an agent posts after applying (or refusing) its effective config: the config
    version it runs, its software version, and why it refused the last one it received."""

    config_version: str | None = Field(default=None, max_length=64)
    software_version: str = Field(min_length=1, max_length=64)
    error: str | None = Field(default=None, max_length=2000)
