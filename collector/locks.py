"""Advisory locks that make collector processes sharing one PostgreSQL take turns (no-ops
on SQLite, where one process writes at a time). Transaction-scoped: held until the caller's
transaction ends. The first of the two int4 keys names the kind of work."""

from __future__ import annotations

import sqlalchemy as sa

SITE_LOCK = 0x5153_0001  # a site's rule states (evaluation, a ticket resolved by hand)
SILENT_CHECK_LOCK = 0x5153_0002  # the silent-agent check, one collector at a time


def lock_site(conn: sa.Connection, site_id: str) -> None:
    """Wait until no other transaction works on this site's rule states."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:site))"),
            {"space": SITE_LOCK, "site": site_id},
        )


def take_silent_check(conn: sa.Connection) -> bool:
    """True when this transaction is the one collector running the silent check now."""
    if conn.dialect.name != "postgresql":
        return True
    got = conn.execute(
        sa.text("SELECT pg_try_advisory_xact_lock(:space, 0)"), {"space": SILENT_CHECK_LOCK}
    ).scalar()
    return bool(got)
