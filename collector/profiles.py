"""Probe profiles: a partner's, a customer's and a site's layer of agent modules, stored,
checked with the agent's own model (agent.wire.profiles) and merged into the effective
config an agent fetches; what agents report running; which agents are outdated or silent.

A layer is refused (Invalid, the key named) when it is not the wire model, or when the
config it makes with the layers above it is not, for itself and for every layer below it
that exists (changing a partner's profile cannot break a site's). Probe kinds are checked
against the contract (`MEASUREMENTS`); each probe's own options are checked by the agent,
which refuses a config it cannot run and reports why (`config_error` on its row).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from agent.wire import VERSION
from agent.wire.profiles import (
    SCOPES,
    ConfigReport,
    EffectiveConfig,
    Profile,
    ProfileError,
    Scope,
    config_version,
    merge,
    parse_profile,
    validate_modules,
)
from collector import tenants
from collector.errors import Conflict, Invalid, NotFound, PreconditionFailed
from collector.schema import agents, probe_profiles, sites
from collector.timefmt import iso


def _owner_check(conn: sa.Connection, partner_id: str, scope: Scope, scope_id: str) -> None:
    """NotFound unless the partner owns the scope's object (another partner's: the same)."""
    if scope == "partner":
        if scope_id != partner_id:
            raise NotFound(f"partner {scope_id} not found")
    elif scope == "customer":
        tenants.get_customer(conn, partner_id, scope_id)
    elif scope == "site":
        tenants.get_site(conn, partner_id, scope_id)
    else:
        raise Invalid(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")


def _row(conn: sa.Connection, scope: str, scope_id: str) -> Any:
    q = sa.select(probe_profiles).where(
        probe_profiles.c.scope == scope, probe_profiles.c.scope_id == scope_id
    )
    return conn.execute(q).first()


def _view(r: Any) -> dict[str, Any]:
    return {
        "scope": r.scope,
        "scope_id": r.scope_id,
        "version": r.version,
        "modules": r.document.get("modules", {}),
        "updated_at": iso(r.updated_at),
    }


def get_profile(
    conn: sa.Connection, partner_id: str, scope: Scope, scope_id: str
) -> dict[str, Any]:
    _owner_check(conn, partner_id, scope, scope_id)
    r = _row(conn, scope, scope_id)
    if r is None:
        raise NotFound(f"{scope} {scope_id} has no profile")
    return _view(r)


def _layers(conn: sa.Connection, partner_id: str) -> dict[tuple[str, str], Profile]:
    q = sa.select(probe_profiles).where(probe_profiles.c.partner_id == partner_id)
    return {(r.scope, r.scope_id): Profile.model_validate(r.document) for r in conn.execute(q)}


def _chains(
    conn: sa.Connection,
    partner_id: str,
    layers: dict[tuple[str, str], Profile],
    changed: tuple[Scope, str],
) -> list[tuple[str, list[Profile]]]:
    """The stored layers the change touches (the changed one and those below it), each with
    the layers above it: (what to call it, [layers, top first])."""
    site_customer = dict(
        conn.execute(
            sa.select(sites.c.id, sites.c.customer_id).where(sites.c.partner_id == partner_id)
        ).all()
    )
    top = [layers[("partner", partner_id)]] if ("partner", partner_id) in layers else []
    scope, changed_id = changed
    out: list[tuple[str, list[Profile]]] = []
    for (s, sid), prof in sorted(layers.items()):
        if s == "partner" and scope == "partner":
            out.append((_label("partner", sid), [prof]))
        elif s == "customer" and (scope == "partner" or (s, sid) == changed):
            out.append((_label("customer", sid), [*top, prof]))
        elif s == "site" and (
            scope == "partner"
            or (scope == "customer" and site_customer.get(sid) == changed_id)
            or (s, sid) == changed
        ):
            cust = layers.get(("customer", site_customer.get(sid, "")))
            out.append((_label("site", sid), [*top, *([cust] if cust else []), prof]))
    return out


def check_layers(
    conn: sa.Connection,
    partner_id: str,
    layers: dict[tuple[str, str], Profile],
    changed: tuple[Scope, str],
) -> None:
    """Invalid naming the key when the changed layer, or one below it, does not make a valid
    config with the layers above it; a layer below is named in the message."""
    for label, chain in _chains(conn, partner_id, layers, changed):
        try:
            validate_modules(merge(chain))
        except ProfileError as exc:
            own = label == _label(*changed)
            raise Invalid(str(exc) if own else f"{label}: {exc}") from None


def _label(scope: Scope, scope_id: str) -> str:
    return "partner profile" if scope == "partner" else f"{scope} {scope_id}"


def put_profile(
    conn: sa.Connection,
    partner_id: str,
    scope: Scope,
    scope_id: str,
    document: dict[str, Any],
    now: float,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Create or replace a layer. `if_match`: the version the caller read (412 when it is
    not the current one; 0 means "create only")."""
    _owner_check(conn, partner_id, scope, scope_id)
    try:
        profile = parse_profile(document)
    except ProfileError as exc:
        raise Invalid(str(exc)) from None
    r = _row(conn, scope, scope_id)
    current = r.version if r is not None else 0
    if if_match is not None and if_match != current:
        raise PreconditionFailed(
            f"{_label(scope, scope_id)} is at version {current}, not {if_match}: "
            "read it again and apply the change to that"
        )
    layers = _layers(conn, partner_id)
    layers[(scope, scope_id)] = profile
    check_layers(conn, partner_id, layers, (scope, scope_id))
    doc = profile.model_dump(mode="json", exclude_unset=True)
    if r is None:
        conn.execute(
            probe_profiles.insert().values(
                scope=scope, scope_id=scope_id, partner_id=partner_id, document=doc,
                version=1, updated_at=now,
            )
        )  # fmt: skip
    else:
        conn.execute(
            probe_profiles.update()
            .where(probe_profiles.c.scope == scope, probe_profiles.c.scope_id == scope_id)
            .where(probe_profiles.c.version == current)
            .values(document=doc, version=current + 1, updated_at=now)
        )
    tenants.bump_config_epoch(conn, now)  # every replica's cached config versions go
    return get_profile(conn, partner_id, scope, scope_id)


def delete_profile(
    conn: sa.Connection,
    partner_id: str,
    scope: Scope,
    scope_id: str,
    if_match: int | None = None,
    *,
    now: float,
) -> None:
    """Remove a layer; refused (Invalid) when a layer below it needs it to be complete."""
    current = get_profile(conn, partner_id, scope, scope_id)["version"]
    if if_match is not None and if_match != current:
        raise PreconditionFailed(
            f"{_label(scope, scope_id)} is at version {current}, not {if_match}"
        )
    layers = _layers(conn, partner_id)
    del layers[(scope, scope_id)]
    check_layers(conn, partner_id, layers, (scope, scope_id))
    conn.execute(
        probe_profiles.delete().where(
            probe_profiles.c.scope == scope, probe_profiles.c.scope_id == scope_id
        )
    )
    tenants.bump_config_epoch(conn, now)  # every replica's cached config versions go


def effective(conn: sa.Connection, partner_id: str, site_id: str) -> EffectiveConfig:
    """The config an agent of the site runs: the partner's, customer's and site's layers
    merged (an empty, non-central config when none exists)."""
    site = tenants.get_site(conn, partner_id, site_id)
    keys = [("partner", partner_id), ("customer", site["customer_id"]), ("site", site_id)]
    q = sa.select(probe_profiles).where(
        sa.tuple_(probe_profiles.c.scope, probe_profiles.c.scope_id).in_(keys)
    )
    found = {r.scope: Profile.model_validate(r.document) for r in conn.execute(q)}
    present: list[Scope] = [s for s in SCOPES if s in found]
    try:
        modules = validate_modules(merge([found[s] for s in present])) if present else {}
    except ProfileError as exc:  # a site moved to another customer, a probe kind retired
        raise Conflict(
            f"the profiles of site {site_id} ({', '.join(present)}) do not make a valid "
            f"config: {exc}"
        ) from None
    return EffectiveConfig(
        version=config_version(modules) if present else "local",
        central=bool(present),
        layers=present,
        modules=modules,
    )


def record_report(conn: sa.Connection, agent_id: str, report: ConfigReport, now: float) -> None:
    conn.execute(
        agents.update()
        .where(agents.c.id == agent_id)
        .values(
            version=report.software_version,
            config_version=report.config_version,
            config_error=report.error,
            config_reported_at=now,
        )
    )


def version_key(version: str) -> tuple[int, ...] | None:
    """`1.2.3` as (1, 2, 3) for comparing; None when the text is not a release number."""
    m = re.match(r"^v?(\d+(?:\.\d+){0,3})", version.strip())
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def agent_health(
    agent: dict[str, Any], now: float, *, silent_after_s: float, min_version: str | None
) -> dict[str, Any]:
    """`outdated`: the agent's software is older than this collector's release or than
    `min_version` (or does not say which it is); `silent`: not heard from for
    `silent_after_s` (or never)."""
    wanted = max(version_key(VERSION) or (0,), version_key(min_version or "0") or (0,))
    have = version_key(agent.get("version") or "")
    last = agent.get("last_seen_at")
    return {
        "outdated": have is None or have < wanted,
        "silent": last is None or now - last > silent_after_s,
    }
