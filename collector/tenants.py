"""Partners, customers, sites, enrollment tokens and agents; every query scoped by partner."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector.errors import Conflict, NotFound, Unauthorized
from collector.keys import (
    AGENT_PREFIX,
    PARTNER_PREFIX,
    TOKEN_PREFIX,
    hash_secret,
    new_id,
    new_secret,
)
from collector.schema import SITE_FIELDS, agents, customers, enrollment_tokens, partners, sites


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


def rotate_partner_key(conn: sa.Connection, partner_id: str) -> str:
    key = new_secret(PARTNER_PREFIX)
    res = conn.execute(
        partners.update().where(partners.c.id == partner_id).values(key_hash=hash_secret(key))
    )
    if res.rowcount == 0:
        raise NotFound(f"partner {partner_id} not found")
    return key


def list_partners(conn: sa.Connection) -> list[dict[str, Any]]:
    q = sa.select(partners.c.id, partners.c.name, partners.c.created_at).order_by(partners.c.name)
    return [dict(r._mapping) for r in conn.execute(q)]


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
    return {"token": token, "site_id": site_id, "expires_at": now + ttl_s}


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
    if t.used_at is not None:
        raise Unauthorized("enrollment token was already used")
    if t.expires_at < now:
        raise Unauthorized("enrollment token has expired")
    key = new_secret(AGENT_PREFIX)
    agent_id = new_id()
    # Spend the token first, conditionally, so two concurrent enrollments cannot both win.
    spent = conn.execute(
        enrollment_tokens.update()
        .where(enrollment_tokens.c.token_hash == th, enrollment_tokens.c.used_at.is_(None))
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
        )
    )
    return {"agent_id": agent_id, "agent_key": key, "site_id": t.site_id}


AGENT_COLUMNS = (
    agents.c.id,
    agents.c.partner_id,
    agents.c.site_id,
    agents.c.hostname,
    agents.c.version,
    agents.c.created_at,
    agents.c.last_seen_at,
)


def agent_by_key(conn: sa.Connection, key: str) -> dict[str, Any]:
    q = sa.select(*AGENT_COLUMNS).where(agents.c.key_hash == hash_secret(key))
    r = conn.execute(q).first()
    if r is None:
        raise Unauthorized("unknown agent key")
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


def touch_agent(conn: sa.Connection, agent_id: str, now: float) -> None:
    conn.execute(agents.update().where(agents.c.id == agent_id).values(last_seen_at=now))
