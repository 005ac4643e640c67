"""The read-only PostgreSQL role Grafana's site-history board reads the roll-ups with.

`READS` is every column the board's SQL names (dashboards/generate.py, `site_history`),
and all the role may read: SELECT on those columns only (not the partners' key hashes, not
the raw results), nothing else. `grant()` creates the role or brings an existing one to
exactly that (any other privilege it held on the collector's tables is revoked), read-only
by default and with a statement timeout, so a wide panel cannot hold the database.
`tests/collector/test_site_history_board.py` runs every panel as the role and checks it
can change nothing; `tests/deploy/test_dashboards.py` that the board names only these.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

import sqlalchemy as sa

from collector.errors import Invalid

DEFAULT_ROLE = "qos_scout_grafana"
STATEMENT_TIMEOUT = "30s"
READS: dict[str, tuple[str, ...]] = {
    "partners": ("id", "name"),
    "customers": ("id", "partner_id", "name"),
    "sites": ("id", "partner_id", "customer_id", "name"),
    "rollups": (
        "period", "bucket", "site_id", "probe", "target", "field", "direction",
        "count", "ok", "min", "p50", "p95", "max",
    ),
}  # fmt: skip
_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_role_name(role: str) -> None:
    if not _ROLE.fullmatch(role):
        raise Invalid(
            f"role name {role!r}: use 1 to 63 lower-case letters, digits and underscores, "
            "not starting with a digit"
        )


def check_password(password: str) -> None:
    if len(password) < 16:
        raise Invalid("the role's password is shorter than 16 characters")
    if not all(33 <= ord(ch) <= 126 for ch in password):
        raise Invalid(
            "the role's password holds a space, a control or a non-ASCII character "
            "(use printable ASCII, e.g. `openssl rand -hex 24`)"
        )


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677; as
    psql's \\password sends it), so the password itself never reaches the server or its
    statement log. Printable ASCII only (`check_password`): SASLprep leaves it as it is."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _literal(conn: sa.Connection, text: str) -> str:
    """`text` as a PostgreSQL string literal, quoted by the driver (utility statements such
    as ALTER ROLE take no bound parameters)."""
    from psycopg import sql

    raw = conn.connection.driver_connection
    return sql.Literal(text).as_string(raw)


def grant(conn: sa.Connection, role: str, password: str) -> dict[str, list[str]]:
    """Create `role` (LOGIN, with `password`) or update it, and leave it SELECT on `READS`
    only; returns table -> the columns granted. PostgreSQL only."""
    if conn.dialect.name != "postgresql":
        raise Invalid("the read-only role is for PostgreSQL; this database is SQLite")
    check_role_name(role)
    check_password(password)
    exists = conn.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).scalar()
    verb = "ALTER" if exists else "CREATE"
    conn.exec_driver_sql(
        f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
        f"PASSWORD {_literal(conn, scram_verifier(password))}"
    )
    conn.exec_driver_sql(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    conn.exec_driver_sql(f"ALTER ROLE {role} SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    database = conn.exec_driver_sql("SELECT current_database()").scalar()
    conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
    for table, columns in READS.items():
        cols = ", ".join(f'"{c}"' for c in columns)  # `count`, `min`, `max`: quoted
        conn.exec_driver_sql(f"GRANT SELECT ({cols}) ON {table} TO {role}")
    return {table: list(columns) for table, columns in READS.items()}
