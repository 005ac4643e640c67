"""Database tables (SQLAlchemy Core). Times are Unix seconds (float) in every dialect.

Changes to these tables need an Alembic migration in collector/migrations/versions.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from collector.compact import CompactJSON, EmptyAsNull, UuidKey

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
Time = sa.Float(precision=53)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(36), primary_key=True)


partners = sa.Table(
    "partners",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("rule_overrides", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    # How long this partner's raw results are kept; NULL: the collector's
    # retention.raw_days (collector/retention.py).
    sa.Column("raw_retention_days", sa.Integer),
)

customers = sa.Table(
    "customers",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("notes", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("partner_id", "name", name="uq_customers_partner_name"),
)

# What tier-1 support gathers about a site: settable by the API, attached to tickets.
SITE_FIELDS = (
    "name",
    "address",
    "contracted_down_bps",
    "contracted_up_bps",
    "firewall_make",
    "firewall_model",
    "sip_server",
    "sip_domain",
    "contacts",
    "call_info",
)

sites = sa.Table(
    "sites",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    sa.Column("contracted_down_bps", sa.BigInteger),
    sa.Column("contracted_up_bps", sa.BigInteger),
    sa.Column("firewall_make", sa.String(200), nullable=False, server_default=""),
    sa.Column("firewall_model", sa.String(200), nullable=False, server_default=""),
    sa.Column("sip_server", sa.String(500), nullable=False, server_default=""),
    sa.Column("sip_domain", sa.String(500), nullable=False, server_default=""),
    sa.Column("contacts", JSON, nullable=False),
    sa.Column("call_info", JSON, nullable=False),
    sa.Column("rule_overrides", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index("ix_sites_partner", "partner_id"),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("site_id", sa.String(36), sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time),
    sa.Column("agent_id", sa.String(36)),
    sa.Column("revoked_at", Time),
)

agents = sa.Table(
    "agents",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("site_id", sa.String(36), sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("version", sa.String(64), nullable=False, server_default=""),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_seen_at", Time),
    # results the agent held unshipped, as it said on its last job poll (NULL: never said)
    sa.Column("spool_depth", sa.Integer),
    # Lifecycle: a disabled agent is refused until enabled again; a revoked one for good
    # (enroll it again); key_rotated_at says when the key in key_hash was issued last.
    sa.Column("disabled_at", Time),
    sa.Column("revoked_at", Time),
    sa.Column("key_rotated_at", Time),
    # What the agent last reported running (POST /api/v1/agent/config/status): the config
    # version ("local" for its own schedule), why it refused the last one, and when.
    sa.Column("config_version", sa.String(64)),
    sa.Column("config_error", sa.Text),
    sa.Column("config_reported_at", Time),
    sa.Index("ix_agents_site", "site_id"),
)

# Probe profiles (agent.wire.profiles): one layer of modules for a partner, a customer or a
# site (`scope_id` is the partner's, customer's or site's id); `version` counts its edits.
probe_profiles = sa.Table(
    "probe_profiles",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("scope_id", sa.String(36), primary_key=True),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("document", JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_probe_profiles_partner", "partner_id"),
)


def _epoch_table(name: str) -> sa.Table:
    """A one-row table (id 1) whose `epoch` moves when what it stands for changes."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("changed_at", Time, nullable=False),
    )


# One row (id 1): bumped in the same transaction as any change that takes a credential
# away (agent disabled, revoked or rekeyed, partner key rotated). Every collector process
# reads it at most once a second and drops its key cache when it moved.
credentials_epoch = _epoch_table("credentials_epoch")

# One row (id 1): bumped in the same transaction as any change to what rule evaluation
# reads of a site or a partner (the site's fields, rule overrides). Every collector process
# reads it with the credentials epoch and drops its cached site contexts when it moved, so
# all replicas evaluate a site with the same rules within EPOCH_CHECK_S of a change.
rules_epoch = _epoch_table("rules_epoch")

# One row (id 1): bumped in the same transaction as any change to what an agent's effective
# config is made of (a probe profile put or deleted, a site moved to another customer). Every
# collector process reads it with the other epochs and drops its cached config versions
# when it moved, so the config fetch's fast path (collector.api.fastconfig) answers "not
# modified" from memory and no replica does so more than EPOCH_CHECK_S after a change.
config_epoch = _epoch_table("config_epoch")

# One row per result. The key includes the time: on PostgreSQL the table is partitioned by
# `started_at` (collector/partitions.py) and a unique key must hold the partition key; a
# retried result carries the same id and time, so it is still stored once. The partner is
# the site's (no column of its own: it was 36 bytes and an index per row). The ids are kept
# in 16 bytes and the measurement compactly (collector/compact.py); both read back as they
# were sent. Compare results' ids with bound values, not with sites.id in SQL: the types
# differ.
results = sa.Table(
    "results",
    metadata,
    # fixed-width columns first, 8-byte ones leading, so PostgreSQL pads no column
    sa.Column("started_at", Time, nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("id", UuidKey, nullable=False),
    sa.Column("site_id", UuidKey, nullable=False),
    sa.Column("agent_id", UuidKey, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("probe", sa.String(64), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("module", sa.String(128)),
    sa.Column("error", JSON),
    sa.Column("measurement", CompactJSON),
    sa.Column("job_id", sa.String(64)),
    sa.Column("tags", EmptyAsNull),  # {}: NULL
    sa.PrimaryKeyConstraint("id", "started_at"),
    # a site's entries arrive in time order and are never updated: PostgreSQL fills its pages
    # (migration 0013; partitions made later take the parent index's fillfactor)
    sa.Index("ix_results_site_time", "site_id", "started_at", postgresql_with={"fillfactor": 100}),
    postgresql_partition_by="RANGE (started_at)",
)

# Roll-ups (collector/rollups.py): per period ("hour", "day"), bucket start, site, probe,
# target, figure and direction ("" when the figure has none): the results counted, those
# that succeeded, how many carried the figure, its min/p50/p95/max. `field` "" is the
# availability row (count and ok, and `good`: the results that succeeded with every figure
# inside the site's rule thresholds). `hist`: for the voice figures the reports read
# (rollups.HIST_FIELDS), how many results had each value rounded to 0.01 ({"4.41": 3});
# NULL on rows rolled before 0010 and on other figures.
rollups = sa.Table(
    "rollups",
    metadata,
    sa.Column("period", sa.String(4), primary_key=True),
    sa.Column("bucket", Time, primary_key=True),
    sa.Column("site_id", sa.String(36), primary_key=True),
    sa.Column("probe", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(512), primary_key=True),
    sa.Column("field", sa.String(64), primary_key=True),
    sa.Column("direction", sa.String(8), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("ok", sa.Integer, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("min", sa.Float),
    sa.Column("p50", sa.Float),
    sa.Column("p95", sa.Float),
    sa.Column("max", sa.Float),
    sa.Column("good", sa.Integer),
    sa.Column("hist", JSON),
    sa.Index("ix_rollups_site", "site_id", "period", "bucket"),
)

# Buckets to roll up (again): ingest marks the hour of each stored result; rolling an hour
# marks its day. `seq` moves on every mark, so a mark made while the bucket was being rolled
# is not lost when the worker clears the one it read.
rollup_pending = sa.Table(
    "rollup_pending",
    metadata,
    sa.Column("period", sa.String(4), primary_key=True),
    sa.Column("bucket", Time, primary_key=True),
    sa.Column("site_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)

# Latest result per (agent, probe, target): what /metrics exposes, kept at ingest.
latest = sa.Table(
    "latest",
    metadata,
    sa.Column("agent_id", sa.String(36), primary_key=True),
    sa.Column("probe", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(512), primary_key=True),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("result_id", sa.String(36), nullable=False),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("measurement", JSON),
)

# Hysteresis state per (site, rule, target).
rule_state = sa.Table(
    "rule_state",
    metadata,
    sa.Column("site_id", sa.String(36), primary_key=True),
    sa.Column("rule_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(512), primary_key=True),
    sa.Column("bad_count", sa.Integer, nullable=False),
    sa.Column("good_count", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("bad_results", JSON, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

tickets = sa.Table(
    "tickets",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("customer_id", sa.String(36), nullable=False),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("rule_id", sa.String(64), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("opened_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("acked_at", Time),
    sa.Column("resolved_at", Time),
    sa.Column("reopen_count", sa.Integer, nullable=False),
    sa.Column("evidence", JSON, nullable=False),
    sa.Index("ix_tickets_partner_state", "partner_id", "state"),
    sa.Index("ix_tickets_key", "site_id", "rule_id", "target"),
    # At most one ticket that is not resolved per (site, rule, target).
    sa.Index(
        "uq_tickets_open_key",
        "site_id",
        "rule_id",
        "target",
        unique=True,
        sqlite_where=sa.text("state != 'resolved'"),
        postgresql_where=sa.text("state != 'resolved'"),
    ),
)

ticket_events = sa.Table(
    "ticket_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(36), sa.ForeignKey("tickets.id"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_ticket_events_ticket", "ticket_id"),
)

# The audit trail of what is kept on a site (its call info): who changed it, when, before
# and after (collector/audit.py), as ticket_events is for a ticket.
site_events = sa.Table(
    "site_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(36), sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_site_events_site", "site_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("site_id", sa.String(36), sa.ForeignKey("sites.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("report", JSON),
    sa.Column("agent_id", sa.String(36)),
    sa.Column("dispatched_at", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_jobs_site_state", "site_id", "state"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("next_attempt_at", Time, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("delivered_at", Time),
    sa.Index("ix_outbox_due", "state", "next_attempt_at"),
)

# Ticket SLA targets per partner and severity (collector/sla.py): how long a ticket may wait
# to be acknowledged (response) and resolved (resolution). A severity without a row takes
# the collector's defaults (sla.DEFAULT_TARGETS).
sla_targets = sa.Table(
    "sla_targets",
    metadata,
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), primary_key=True),
    sa.Column("severity", sa.String(16), primary_key=True),
    sa.Column("response_s", sa.Float, nullable=False),
    sa.Column("resolution_s", sa.Float, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Maintenance windows (collector/maintenance.py): at partner, customer or site level
# (`scope_id` is the partner's, customer's or site's id), one-off or weekly (`schedule`, the
# wire form of maintenance.Schedule). While one is active, new tickets and notifications of
# the affected sites are suppressed.
maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("scope_id", sa.String(36), nullable=False),
    sa.Column("schedule", JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Index("ix_maintenance_windows_partner", "partner_id"),
)

# SLA and quality reports (collector/reports.py): one customer's or one site's figures over
# [since, until), kept as generated (`data`, the page in `html`; `pdf` rendered from that
# page when first asked for, or when the report is e-mailed). A monthly report made by the
# schedule is unique per (customer, month): replicas that both make it store it once.
reports = sa.Table(
    "reports",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("site_id", sa.String(36)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("since", Time, nullable=False),
    sa.Column("until", Time, nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("pdf", sa.LargeBinary),
    sa.Column("emailed_to", JSON),
    sa.Index("ix_reports_partner", "partner_id", "created_at"),
    sa.Index(
        "uq_reports_monthly",
        "customer_id",
        "since",
        unique=True,
        sqlite_where=sa.text("kind = 'monthly'"),
        postgresql_where=sa.text("kind = 'monthly'"),
    ),
)

# The monthly report of a customer: made and e-mailed to `recipients` on `day_of_month` of
# the month after, the month taken in `timezone` (an IANA name).
report_schedules = sa.Table(
    "report_schedules",
    metadata,
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id"), primary_key=True),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("day_of_month", sa.Integer, nullable=False),
    sa.Column("recipients", JSON, nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# A partner's own notification channels (PSA, chat, paging): `settings` holds what is not
# secret (URLs, ids, statuses), `secret` a Fernet token of the credentials
# (collector/secretbox.py), `routing` which tickets go there (collector/channels.py).
partner_channels = sa.Table(
    "partner_channels",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("settings", JSON, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("routing", JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("partner_id", "name", name="uq_partner_channels_partner_name"),
)

# Which PSA company/board/site/client a customer or a site of ours is (`scope_id`: a
# customer id or a site id; a site's entry overrides its customer's).
channel_mappings = sa.Table(
    "channel_mappings",
    metadata,
    sa.Column("channel_id", sa.String(36), primary_key=True),
    sa.Column("scope_id", sa.String(36), primary_key=True),
    sa.Column("values", JSON, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# A ticket's counterpart in a PSA: written as "creating" before the create request (a retry
# after a lost answer then searches the PSA for `reference` first), its id as soon as known.
external_tickets = sa.Table(
    "external_tickets",
    metadata,
    sa.Column("ticket_id", sa.String(36), primary_key=True),
    sa.Column("channel_id", sa.String(36), primary_key=True),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# People of a partner (collector/users.py): a role, for a customer viewer the one customer
# they may see; the password as an argon2 hash (NULL until an invitation is accepted).
users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id")),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("disabled_at", Time),
    sa.Index("ix_users_partner", "partner_id"),
)

# Web sessions: the cookie holds a random id, the table its SHA-256.
user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_seen_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("user_agent", sa.String(200), nullable=False, server_default=""),
    sa.Column("revoked_at", Time),
    sa.Index("ix_user_sessions_user", "user_id"),
)

# A user's API tokens (bearer on /api/v1, with the user's role and scope); the hash only.
user_tokens = sa.Table(
    "user_tokens",
    metadata,
    _id(),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time),
)

# Invitations (and password resets): a single-use link, stored hashed, expiring.
invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time),
)

# The partner's audit log (collector/audit.py): every change, with who made it.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partner_id", sa.String(36), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, server_default=""),
    sa.Column("data", JSON, nullable=False),
    sa.Index("ix_audit_log_partner", "partner_id", "id"),
)

# A partner's brand (collector/brand.py); no row: the defaults.
brands = sa.Table(
    "brands",
    metadata,
    sa.Column("partner_id", sa.String(36), sa.ForeignKey("partners.id"), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("primary_color", sa.String(7), nullable=False),
    sa.Column("accent_color", sa.String(7), nullable=False),
    sa.Column("support_contact", sa.String(300), nullable=False, server_default=""),
    sa.Column("domain", sa.String(253), unique=True),
    sa.Column("logo", sa.LargeBinary),
    sa.Column("logo_type", sa.String(32)),
    sa.Column("updated_at", Time, nullable=False),
)
