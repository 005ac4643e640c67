"""Who is asking and what they may do: the one `Principal` of a request (web session, a
user's API token or the partner key) and the permission table every route checks against.

Roles: `admin` (everything of the partner; the partner key acts as one, with no user),
`technician` (sites, tests, tickets, call info; no users, brand or credentials) and
`customer` (read-only, one customer's sites, tests, reports and tickets; may comment and
add call info on their own tickets). A right missing for the role is a 403 (`Forbidden`);
an object outside the principal's partner, or outside a customer viewer's customer, is a
404 (`NotFound`), the same answer as one that does not exist.

Pages and API routes of other modules use it the same way: `require(principal, right)`,
and for objects a customer viewer might reach, `scope_site` / `scope_ticket` / ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from collector.errors import Forbidden, NotFound
from collector.schema import agents, customers, jobs, sites, tickets, users

ALL = frozenset({"admin", "technician", "customer"})
STAFF = frozenset({"admin", "technician"})
ADMIN = frozenset({"admin"})

# right -> the roles that have it (the one place a role is checked)
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": ALL,  # sites, tests, reports, tickets (a customer viewer: their customer's)
    "ticket.comment": ALL,  # comments and call info on a ticket
    "partner.read": STAFF,  # partner-wide views: customers, agents, tokens, rules, metrics
    "sites.write": STAFF,  # customers, sites, call info, probe profiles, rule overrides
    "tests.run": STAFF,  # readiness tests and jobs
    "tickets.write": STAFF,  # acknowledge, resolve, open from a test
    "credentials": ADMIN,  # enrollment tokens, agents' keys (disable, revoke, rotate)
    "users": ADMIN,  # invite, change role, disable
    "brand": ADMIN,
    "audit": ADMIN,
    "reports.write": STAFF,  # make reports on demand, the monthly schedules' recipients
    "settings": ADMIN,  # the partner's ticket SLA targets
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a partner, and the user acting for it (None: the partner key)."""

    partner_id: str
    partner_name: str
    role: str
    user_id: str | None = None
    email: str | None = None
    customer_id: str | None = None  # a customer viewer's one customer

    @property
    def actor(self) -> str:
        """How audit entries and ticket events name the caller."""
        return f"user:{self.email}" if self.email else "partner key"

    def can(self, right: str) -> bool:
        return self.role in PERMISSIONS[right]


def for_partner_key(partner: dict[str, Any]) -> Principal:
    return Principal(partner["id"], partner["name"], "admin")


def for_user(user: dict[str, Any], partner_name: str) -> Principal:
    return Principal(
        user["partner_id"], partner_name, user["role"], user["id"], user["email"],
        user.get("customer_id"),
    )  # fmt: skip


def require(p: Principal, right: str) -> None:
    if not p.can(right):
        raise Forbidden(f"your role ({p.role}) may not do this ({right})")


# --------------------------------------------------------------------------- scope


def _customer_of(conn: sa.Connection, p: Principal, table: sa.Table, ident: str) -> str | None:
    if table is sites:
        q = sa.select(sites.c.customer_id).where(sites.c.id == ident)
    else:
        q = (
            sa.select(sites.c.customer_id)
            .join(table, table.c.site_id == sites.c.id)
            .where(table.c.id == ident)
        )
    return conn.execute(q.where(sites.c.partner_id == p.partner_id)).scalar()


def _scoped(conn: sa.Connection, p: Principal, table: sa.Table, what: str, ident: str) -> None:
    """NotFound unless the object is the partner's and, for a customer viewer, one of
    their customer's."""
    found = _customer_of(conn, p, table, ident)
    if found is None or (p.customer_id is not None and found != p.customer_id):
        raise NotFound(f"{what} {ident[:64]} not found")


def scope_site(conn: sa.Connection, p: Principal, site_id: str) -> None:
    _scoped(conn, p, sites, "site", site_id)


def scope_ticket(conn: sa.Connection, p: Principal, ticket_id: str) -> None:
    _scoped(conn, p, tickets, "ticket", ticket_id)


def scope_job(conn: sa.Connection, p: Principal, job_id: str) -> None:
    _scoped(conn, p, jobs, "job", job_id)


def scope_agent(conn: sa.Connection, p: Principal, agent_id: str) -> None:
    _scoped(conn, p, agents, "agent", agent_id)


def scope_customer(conn: sa.Connection, p: Principal, customer_id: str) -> None:
    mine = conn.execute(
        sa.select(customers.c.id).where(
            customers.c.id == customer_id, customers.c.partner_id == p.partner_id
        )
    ).first()
    if mine is None or (p.customer_id is not None and customer_id != p.customer_id):
        raise NotFound(f"customer {customer_id[:64]} not found")


def scope_report(conn: sa.Connection, p: Principal, report_id: str) -> None:
    from collector.schema import reports

    row = conn.execute(
        sa.select(reports.c.customer_id).where(
            reports.c.id == report_id, reports.c.partner_id == p.partner_id
        )
    ).first()
    if row is None or (p.customer_id is not None and row[0] != p.customer_id):
        raise NotFound(f"report {report_id[:64]} not found")


def _owned(conn: sa.Connection, p: Principal, table: sa.Table, what: str, ident: str) -> None:
    """NotFound unless the partner-wide object (no customer of its own) is the partner's."""
    mine = conn.execute(
        sa.select(table.c.id).where(table.c.id == ident, table.c.partner_id == p.partner_id)
    ).first()
    if mine is None:
        raise NotFound(f"{what} {ident[:64]} not found")


def scope_channel(conn: sa.Connection, p: Principal, channel_id: str) -> None:
    from collector.schema import partner_channels

    _owned(conn, p, partner_channels, "channel", channel_id)


def scope_window(conn: sa.Connection, p: Principal, window_id: str) -> None:
    from collector.schema import maintenance_windows

    _owned(conn, p, maintenance_windows, "maintenance window", window_id)


def scope_user(conn: sa.Connection, p: Principal, user_id: str) -> None:
    mine = conn.execute(
        sa.select(users.c.id).where(users.c.id == user_id, users.c.partner_id == p.partner_id)
    ).first()
    if mine is None:
        raise NotFound(f"user {user_id[:64]} not found")


SCOPE_PARAMS = {
    "site_id": scope_site, "ticket_id": scope_ticket, "job_id": scope_job,
    "agent_id": scope_agent, "customer_id": scope_customer, "user_id": scope_user,
    "report_id": scope_report, "channel_id": scope_channel, "window_id": scope_window,
}  # fmt: skip


def scope_params(conn: sa.Connection, p: Principal, params: dict[str, str]) -> None:
    """Check every object a route's path names is the caller's partner's (and, for a
    customer viewer, their customer's): NotFound before the route reads its body."""
    for name, value in params.items():
        if name in SCOPE_PARAMS:
            SCOPE_PARAMS[name](conn, p, value)


# --------------------------------------------------------------------------- API routes

# (method, route path) -> the right it needs. A route not listed needs `credentials`
# (admins only): a new route is closed to the other roles until someone decides.
API_RIGHTS: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/partner"): "partner.read",
    ("GET", "/api/v1/customers"): "partner.read",
    ("POST", "/api/v1/customers"): "sites.write",
    ("GET", "/api/v1/customers/{customer_id}"): "read",
    ("PATCH", "/api/v1/customers/{customer_id}"): "sites.write",
    ("DELETE", "/api/v1/customers/{customer_id}"): "sites.write",
    ("GET", "/api/v1/sites"): "read",
    ("POST", "/api/v1/sites"): "sites.write",
    ("GET", "/api/v1/sites/{site_id}"): "read",
    ("PATCH", "/api/v1/sites/{site_id}"): "sites.write",
    ("POST", "/api/v1/sites/{site_id}/tokens"): "credentials",
    ("GET", "/api/v1/agents"): "partner.read",
    ("GET", "/api/v1/agents/{agent_id}"): "partner.read",
    ("POST", "/api/v1/agents/{agent_id}/disable"): "credentials",
    ("POST", "/api/v1/agents/{agent_id}/enable"): "credentials",
    ("POST", "/api/v1/agents/{agent_id}/revoke"): "credentials",
    ("POST", "/api/v1/agents/{agent_id}/rotate-key"): "credentials",
    ("GET", "/api/v1/tokens"): "credentials",
    ("POST", "/api/v1/tokens/{token_id}/revoke"): "credentials",
    ("GET", "/api/v1/metrics"): "partner.read",
    ("GET", "/api/v1/results"): "partner.read",
    ("POST", "/api/v1/sites/{site_id}/jobs"): "tests.run",
    ("GET", "/api/v1/jobs/{job_id}"): "read",
    ("GET", "/api/v1/rules"): "partner.read",
    ("PUT", "/api/v1/rules/overrides"): "sites.write",
    ("GET", "/api/v1/sites/{site_id}/history"): "read",
    ("GET", "/api/v1/profiles/{scope}/{scope_id}"): "partner.read",
    ("PUT", "/api/v1/profiles/{scope}/{scope_id}"): "sites.write",
    ("DELETE", "/api/v1/profiles/{scope}/{scope_id}"): "sites.write",
    ("GET", "/api/v1/sites/{site_id}/config"): "partner.read",
    ("POST", "/api/v1/sites/{site_id}/readiness"): "tests.run",
    ("GET", "/api/v1/sites/{site_id}/readiness"): "read",
    ("GET", "/api/v1/readiness/{job_id}"): "read",
    ("GET", "/api/v1/readiness/{job_id}/report.html"): "read",
    ("GET", "/api/v1/readiness/{job_id}/report.json"): "read",
    ("POST", "/api/v1/readiness/{job_id}/ticket"): "tickets.write",
    ("GET", "/api/v1/sites/{site_id}/call_info/events"): "partner.read",
    ("PUT", "/api/v1/tickets/{ticket_id}/call_info"): "ticket.comment",
    ("GET", "/api/v1/tickets"): "read",
    ("GET", "/api/v1/tickets/{ticket_id}"): "read",
    ("POST", "/api/v1/tickets/{ticket_id}/ack"): "tickets.write",
    ("POST", "/api/v1/tickets/{ticket_id}/resolve"): "tickets.write",
    ("POST", "/api/v1/tickets/{ticket_id}/comments"): "ticket.comment",
    ("GET", "/api/v1/audit"): "audit",
    ("GET", "/api/v1/users"): "users",
    ("POST", "/api/v1/users"): "users",
    ("PATCH", "/api/v1/users/{user_id}"): "users",
    ("GET", "/api/v1/me/sessions"): "read",
    ("POST", "/api/v1/me/sessions/{session_id}/revoke"): "read",
    ("POST", "/api/v1/me/tokens"): "read",
    ("GET", "/api/v1/brand"): "read",
    ("PUT", "/api/v1/brand"): "brand",
    # the portal: SLA targets, maintenance windows, the bad call, roll-ups
    ("GET", "/api/v1/sla/targets"): "partner.read",
    ("PUT", "/api/v1/sla/targets"): "settings",
    ("GET", "/api/v1/maintenance"): "partner.read",
    ("POST", "/api/v1/maintenance"): "sites.write",
    ("DELETE", "/api/v1/maintenance/{window_id}"): "sites.write",
    ("GET", "/api/v1/sites/{site_id}/badcall"): "read",
    ("POST", "/api/v1/sites/{site_id}/badcall/attach"): "tickets.write",
    ("GET", "/api/v1/rollup"): "partner.read",
    ("GET", "/api/v1/customers/{customer_id}/rollup"): "read",
    # SLA and quality reports (a customer viewer: their customer's)
    ("POST", "/api/v1/reports"): "reports.write",
    ("GET", "/api/v1/reports"): "read",
    ("GET", "/api/v1/reports/{report_id}"): "read",
    ("GET", "/api/v1/reports/{report_id}/report.{fmt}"): "read",
    ("GET", "/api/v1/customers/{customer_id}/report-schedule"): "partner.read",
    ("PUT", "/api/v1/customers/{customer_id}/report-schedule"): "reports.write",
    ("DELETE", "/api/v1/customers/{customer_id}/report-schedule"): "reports.write",
    # the partner's own channels (PSA, chat, paging): credentials, so admins only
    ("GET", "/api/v1/channels"): "credentials",
    ("POST", "/api/v1/channels"): "credentials",
    ("GET", "/api/v1/channels/{channel_id}"): "credentials",
    ("PATCH", "/api/v1/channels/{channel_id}"): "credentials",
    ("DELETE", "/api/v1/channels/{channel_id}"): "credentials",
    ("POST", "/api/v1/channels/{channel_id}/test"): "credentials",
    ("GET", "/api/v1/channels/{channel_id}/mappings"): "credentials",
    ("PUT", "/api/v1/channels/{channel_id}/mappings/{scope_id}"): "credentials",
    ("DELETE", "/api/v1/channels/{channel_id}/mappings/{scope_id}"): "credentials",
}


def route_right(method: str, path: str) -> str:
    return API_RIGHTS.get((method.upper(), path), "credentials")
