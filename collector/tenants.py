"""Partners, customers, sites, enrollment tokens and agents; every query scoped by partner."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector.errors import Conflict, Invalid, NotFound, Unauthorized
from collector.keys import (
    AGENT_PREFIX,
    PARTNER_PREFIX,
    TOKEN_PREFIX,
    hash_secret,
    new_id,
    new_secret,
)
from collector.schema import (
    SITE_FIELDS,
    agents,
    config_epoch,
    credentials_epoch,
    customers,
    enrollment_tokens,
    partners,
    probe_profiles,
    report_schedules,
    reports,
    rules_epoch,
    sites,
)
from collector.timefmt import iso


def _row(r: Any, what: str, ident: str) -> dict[str, Any]:
    if r is None:
        raise NotFound(f"{what} {ident} not found")
    return dict(r._mapping)


# -- partners -------------------------------------------------------------------------


def create_partner(conn: sa.Connection, name: str, now: float) -> tuple[dict[str, Any], str]:
    """Create a partner; returns its row and its API key (the only time the key is seen)."""
    if conn.execute(sa.select(partners.c.id).where(partners.c.name == name)).first():
        raise Conflict(f"partner {name!r} already exists")
    key = new_secret(PARTNER_PREFIX)
    row = {
        "id": new_id(),
        "name": name,
        "key_hash": hash_secret(key),
        "rule_overrides": {},
        "created_at": now,
    }
    conn.execute(partners.insert().values(row))
    return row, key


def rotate_partner_key(conn: sa.Connection, partner_id: str, now: float = 0.0) -> str:
    key = new_secret(PARTNER_PREFIX)
    res = conn.execute(
        partners.update().where(partners.c.id == partner_id).values(key_hash=hash_secret(key))
    )
    if res.rowcount == 0:
        raise NotFound(f"partner {partner_id} not found")
    bump_epoch(conn, now)
    return key


# -- credentials epoch ----------------------------------------------------------------


def _bump(conn: sa.Connection, table: sa.Table, now: float) -> None:
    conn.execute(
        table.update().where(table.c.id == 1).values(epoch=table.c.epoch + 1, changed_at=now)
    )


def _read(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(table.c.epoch).where(table.c.id == 1)).scalar_one())


def bump_epoch(conn: sa.Connection, now: float) -> None:
    """Say that a credential was taken away, in the caller's transaction: every collector
    process drops its key cache at its next epoch read (at most EPOCH_CHECK_S later)."""
    _bump(conn, credentials_epoch, now)


def read_epoch(conn: sa.Connection) -> int:
    return _read(conn, credentials_epoch)


def bump_rules_epoch(conn: sa.Connection, now: float) -> None:
    """Say that what rules read of a site or partner changed, in the caller's transaction:
    every collector process drops its cached site contexts at its next epoch read."""
    _bump(conn, rules_epoch, now)


def read_rules_epoch(conn: sa.Connection) -> int:
    return _read(conn, rules_epoch)


CONFIG_EPOCH_MOVED = "qs_config_epoch_moved"  # a key of `Connection.info`


def bump_config_epoch(conn: sa.Connection, now: float) -> None:
    """Say that what an agent's effective config is made of changed (a profile, a site's
    customer), in the caller's transaction: every collector process drops its cached config
    versions at its next epoch read, and the API's `_write` in this process as soon as the
    transaction commits (it reads `conn.info[CONFIG_EPOCH_MOVED]`)."""
    conn.info[CONFIG_EPOCH_MOVED] = True
    _bump(conn, config_epoch, now)


def read_config_epoch(conn: sa.Connection) -> int:
    return _read(conn, config_epoch)


def list_partners(conn: sa.Connection) -> list[dict[str, Any]]:
    q = sa.select(
        partners.c.id, partners.c.name, partners.c.created_at, partners.c.raw_retention_days
    ).order_by(partners.c.name)
    return [dict(r._mapping) for r in conn.execute(q)]


MAX_RETENTION_DAYS = 3650


def set_partner_retention(conn: sa.Connection, partner_id: str, days: int | None) -> None:
    """How many days this partner's raw results are kept; None: the collector's
    `retention.raw_days`."""
    if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
        raise Invalid(
            f"raw_retention_days: {days} is not a number of days from 1 to "
            f"{MAX_RETENTION_DAYS} (or none: the collector's retention.raw_days)"
        )
    res = conn.execute(
        partners.update().where(partners.c.id == partner_id).values(raw_retention_days=days)
    )
    if res.rowcount == 0:
        raise NotFound(f"partner {partner_id} not found")


def partner_by_key(conn: sa.Connection, key: str) -> dict[str, Any]:
    r = conn.execute(sa.select(partners).where(partners.c.key_hash == hash_secret(key))).first()
    if r is None:
        raise Unauthorized("unknown partner key")
    return dict(r._mapping)


def get_partner(conn: sa.Connection, partner_id: str) -> dict[str, Any]:
    r = conn.execute(sa.select(partners).where(partners.c.id == partner_id)).first()
    return _row(r, "partner", partner_id)


# -- customers ------------------------------------------------------------------------


def create_customer(
    conn: sa.Connection, partner_id: str, name: str, notes: str, now: float
) -> dict[str, Any]:
    dup = sa.select(customers.c.id).where(
        customers.c.partner_id == partner_id, customers.c.name == name
    )
    if conn.execute(dup).first():
        raise Conflict(f"customer {name!r} already exists")
    row = {
        "id": new_id(),
        "partner_id": partner_id,
        "name": name,
        "notes": notes,
        "created_at": now,
    }
    conn.execute(customers.insert().values(row))
    return row


def list_customers(conn: sa.Connection, partner_id: str) -> list[dict[str, Any]]:
    q = sa.select(customers).where(customers.c.partner_id == partner_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(customers.c.name))]


def get_customer(conn: sa.Connection, partner_id: str, customer_id: str) -> dict[str, Any]:
    q = sa.select(customers).where(
        customers.c.id == customer_id, customers.c.partner_id == partner_id
    )
    return _row(conn.execute(q).first(), "customer", customer_id)


def update_customer(
    conn: sa.Connection, partner_id: str, customer_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    get_customer(conn, partner_id, customer_id)
    if values:
        conn.execute(customers.update().where(customers.c.id == customer_id).values(values))
    return get_customer(conn, partner_id, customer_id)


def delete_customer(conn: sa.Connection, partner_id: str, customer_id: str) -> None:
    get_customer(conn, partner_id, customer_id)
    if conn.execute(sa.select(sites.c.id).where(sites.c.customer_id == customer_id)).first():
        raise Conflict(f"customer {customer_id} still has sites")
    conn.execute(
        probe_profiles.delete().where(
            probe_profiles.c.scope == "customer", probe_profiles.c.scope_id == customer_id
        )
    )
    for table in (report_schedules, reports):  # a customer's reports go with it
        conn.execute(table.delete().where(table.c.customer_id == customer_id))
    conn.execute(customers.delete().where(customers.c.id == customer_id))


# -- sites ----------------------------------------------------------------------------


def create_site(
    conn: sa.Connection, partner_id: str, customer_id: str, values: dict[str, Any], now: float
) -> dict[str, Any]:
    get_customer(conn, partner_id, customer_id)
    row: dict[str, Any] = {
        "address": "",
        "firewall_make": "",
        "firewall_model": "",
        "sip_server": "",
        "sip_domain": "",
        "contacts": [],
        "call_info": {},
        **{k: v for k, v in values.items() if k in SITE_FIELDS},
        "id": new_id(),
        "partner_id": partner_id,
        "customer_id": customer_id,
        "rule_overrides": {},
        "created_at": now,
    }
    conn.execute(sites.insert().values(row))
    return get_site(conn, partner_id, row["id"])


def _site_query() -> sa.Select[Any]:
    return sa.select(sites, customers.c.name.label("customer_name")).join(
        customers, customers.c.id == sites.c.customer_id
    )


def list_sites(
    conn: sa.Connection, partner_id: str, customer_id: str | None = None
) -> list[dict[str, Any]]:
    q = _site_query().where(sites.c.partner_id == partner_id)
    if customer_id:
        q = q.where(sites.c.customer_id == customer_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(sites.c.name))]


def site_partner(conn: sa.Connection, site_id: str) -> str:
    """The id of the partner a site belongs to (the operator's CLI: a site id is enough)."""
    pid = conn.execute(sa.select(sites.c.partner_id).where(sites.c.id == site_id)).scalar()
    if pid is None:
        raise NotFound(f"site {site_id} not found")
    return str(pid)


def get_site(conn: sa.Connection, partner_id: str, site_id: str) -> dict[str, Any]:
    q = _site_query().where(sites.c.id == site_id, sites.c.partner_id == partner_id)
    return _row(conn.execute(q).first(), "site", site_id)


def update_site(
    conn: sa.Connection, partner_id: str, site_id: str, values: dict[str, Any]
) -> dict[str, Any]:
    get_site(conn, partner_id, site_id)
    values = {k: v for k, v in values.items() if k in (*SITE_FIELDS, "customer_id")}
    if "customer_id" in values:
        get_customer(conn, partner_id, values["customer_id"])
    if values:
        conn.execute(sites.update().where(sites.c.id == site_id).values(values))
    return get_site(conn, partner_id, site_id)


# -- enrollment and agents ------------------------------------------------------------


def create_token(
    conn: sa.Connection, partner_id: str, site_id: str, ttl_s: float, now: float
) -> dict[str, Any]:
    """A one-time enrollment token for an agent at the site, valid `ttl_s` seconds."""
    get_site(conn, partner_id, site_id)
    token = new_secret(TOKEN_PREFIX)
    conn.execute(
        enrollment_tokens.insert().values(
            token_hash=hash_secret(token),
            partner_id=partner_id,
            site_id=site_id,
            created_at=now,
            expires_at=now + ttl_s,
        )
    )
    return {
        "token": token,
        "id": hash_secret(token)[:TOKEN_ID_CHARS],
        "site_id": site_id,
        "expires_at": now + ttl_s,
    }


def enroll(
    conn: sa.Connection, token: str, hostname: str, version: str, now: float
) -> dict[str, Any]:
    """Spend a token: create the agent and return its key (shown only here)."""
    th = hash_secret(token)
    t = conn.execute(
        sa.select(enrollment_tokens).where(enrollment_tokens.c.token_hash == th)
    ).first()
    if t is None:
        raise Unauthorized("enrollment token is not valid")
    if t.revoked_at is not None:
        raise Unauthorized(f"enrollment token was revoked at {iso(t.revoked_at)}")
    if t.used_at is not None:
        raise Unauthorized("enrollment token was already used")
    if t.expires_at < now:
        raise Unauthorized("enrollment token has expired")
    key = new_secret(AGENT_PREFIX)
    agent_id = new_id()
    # Spend the token first, conditionally, so two concurrent enrollments cannot both win.
    spent = conn.execute(
        enrollment_tokens.update()
        .where(
            enrollment_tokens.c.token_hash == th,
            enrollment_tokens.c.used_at.is_(None),
            enrollment_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=now, agent_id=agent_id)
    )
    if spent.rowcount != 1:
        raise Unauthorized("enrollment token was already used")
    conn.execute(
        agents.insert().values(
            id=agent_id,
            partner_id=t.partner_id,
            site_id=t.site_id,
            hostname=hostname,
            version=version,
            key_hash=hash_secret(key),
            created_at=now,
            last_seen_at=now,
            key_rotated_at=now,
        )
    )
    return {"agent_id": agent_id, "agent_key": key, "site_id": t.site_id}


TOKEN_ID_CHARS = 16  # a token's id: the start of its SHA-256 (the token itself is not kept)


def _token_view(r: Any, now: float) -> dict[str, Any]:
    if r.revoked_at is not None:
        state = "revoked"
    elif r.used_at is not None:
        state = "used"
    elif r.expires_at < now:
        state = "expired"
    else:
        state = "valid"
    return {
        "id": r.token_hash[:TOKEN_ID_CHARS],
        "site_id": r.site_id,
        "state": state,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "used_at": r.used_at,
        "agent_id": r.agent_id,
        "revoked_at": r.revoked_at,
    }


def list_tokens(
    conn: sa.Connection, partner_id: str, now: float, site_id: str | None = None
) -> list[dict[str, Any]]:
    """The partner's enrollment tokens (newest first) with their state: valid, used,
    expired or revoked."""
    q = sa.select(enrollment_tokens).where(enrollment_tokens.c.partner_id == partner_id)
    if site_id:
        q = q.where(enrollment_tokens.c.site_id == site_id)
    q = q.order_by(enrollment_tokens.c.created_at.desc())
    return [_token_view(r, now) for r in conn.execute(q)]


def revoke_token(conn: sa.Connection, partner_id: str, token_id: str, now: float) -> dict[str, Any]:
    """Revoke a token that was not used yet (a used one already is spent: revoke its
    agent). Revoking twice keeps the first time."""
    if len(token_id) != TOKEN_ID_CHARS or not all(c in "0123456789abcdef" for c in token_id):
        raise NotFound(f"enrollment token {token_id} not found")
    where = sa.and_(
        enrollment_tokens.c.partner_id == partner_id,
        enrollment_tokens.c.token_hash.startswith(token_id),
    )
    r = conn.execute(sa.select(enrollment_tokens).where(where)).first()
    if r is None:
        raise NotFound(f"enrollment token {token_id} not found")
    if r.used_at is not None:
        raise Conflict(
            f"enrollment token {token_id} was already used by agent {r.agent_id}: "
            "revoke the agent instead"
        )
    if r.revoked_at is None:
        conn.execute(
            enrollment_tokens.update()
            .where(enrollment_tokens.c.token_hash == r.token_hash)
            .where(enrollment_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    r = conn.execute(sa.select(enrollment_tokens).where(where)).first()
    return _token_view(r, now)


AGENT_COLUMNS = (
    agents.c.id,
    agents.c.partner_id,
    agents.c.site_id,
    agents.c.hostname,
    agents.c.version,
    agents.c.created_at,
    agents.c.last_seen_at,
    agents.c.spool_depth,
    agents.c.disabled_at,
    agents.c.revoked_at,
    agents.c.key_rotated_at,
    agents.c.config_version,
    agents.c.config_error,
    agents.c.config_reported_at,
)


def agent_state(agent: dict[str, Any]) -> str:
    if agent.get("revoked_at") is not None:
        return "revoked"
    if agent.get("disabled_at") is not None:
        return "disabled"
    return "active"


def agent_by_key(conn: sa.Connection, key: str) -> dict[str, Any]:
    """The agent holding this key; Unauthorized with the reason when it may not call in."""
    q = sa.select(*AGENT_COLUMNS).where(agents.c.key_hash == hash_secret(key))
    r = conn.execute(q).first()
    if r is None:
        raise Unauthorized("unknown agent key")
    if r.revoked_at is not None:
        raise Unauthorized(
            f"this agent was revoked at {iso(r.revoked_at)}; "
            "enroll it again with a new token (qos-scout agent enroll)"
        )
    if r.disabled_at is not None:
        raise Unauthorized(
            f"this agent was disabled at {iso(r.disabled_at)}; "
            f"its partner can enable it again (POST /api/v1/agents/{r.id}/enable)"
        )
    return dict(r._mapping)


def list_agents(
    conn: sa.Connection, partner_id: str, site_id: str | None = None
) -> list[dict[str, Any]]:
    q = sa.select(*AGENT_COLUMNS).where(agents.c.partner_id == partner_id)
    if site_id:
        q = q.where(agents.c.site_id == site_id)
    return [dict(r._mapping) for r in conn.execute(q.order_by(agents.c.hostname))]


def get_agent(conn: sa.Connection, partner_id: str, agent_id: str) -> dict[str, Any]:
    q = sa.select(*AGENT_COLUMNS).where(agents.c.id == agent_id, agents.c.partner_id == partner_id)
    return _row(conn.execute(q).first(), "agent", agent_id)


def set_agent_disabled(
    conn: sa.Connection, partner_id: str, agent_id: str, disabled: bool, now: float
) -> dict[str, Any]:
    """Disable an agent (its key is refused until it is enabled again) or enable it.
    A revoked agent cannot be enabled (Conflict)."""
    a = get_agent(conn, partner_id, agent_id)
    if a["revoked_at"] is not None:
        raise Conflict(f"agent {agent_id} was revoked at {iso(a['revoked_at'])}: enroll it again")
    if disabled and a["disabled_at"] is None:
        conn.execute(agents.update().where(agents.c.id == agent_id).values(disabled_at=now))
        bump_epoch(conn, now)
    elif not disabled and a["disabled_at"] is not None:
        conn.execute(agents.update().where(agents.c.id == agent_id).values(disabled_at=None))
    return get_agent(conn, partner_id, agent_id)


def revoke_agent(conn: sa.Connection, partner_id: str, agent_id: str, now: float) -> dict[str, Any]:
    """Revoke an agent for good: its key is refused with the time of revocation (the key
    hash is kept so the refusal can say so). Revoking twice keeps the first time."""
    a = get_agent(conn, partner_id, agent_id)
    if a["revoked_at"] is None:
        conn.execute(agents.update().where(agents.c.id == agent_id).values(revoked_at=now))
        bump_epoch(conn, now)
    return get_agent(conn, partner_id, agent_id)


def rotate_agent_key(
    conn: sa.Connection, partner_id: str, agent_id: str, now: float
) -> tuple[dict[str, Any], str]:
    """A new key for the agent (returned once); the old one stops working."""
    a = get_agent(conn, partner_id, agent_id)
    if a["revoked_at"] is not None:
        raise Conflict(f"agent {agent_id} was revoked at {iso(a['revoked_at'])}: enroll it again")
    key = new_secret(AGENT_PREFIX)
    conn.execute(
        agents.update()
        .where(agents.c.id == agent_id)
        .values(key_hash=hash_secret(key), key_rotated_at=now)
    )
    bump_epoch(conn, now)
    return get_agent(conn, partner_id, agent_id), key
