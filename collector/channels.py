"""Partners' own notification channels (PSA ticketing, chat, paging): the models a partner
sends, storage with the credentials sealed (collector/secretbox.py), routing by severity,
customer and rule, customer/site mappings to PSA ids, and the PSA tickets made of ours."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.wire.errors import format_validation_error
from collector.config import ChannelsConfig
from collector.egress import url_problem
from collector.errors import Conflict, Invalid, NotFound
from collector.keys import new_id
from collector.schema import (
    channel_mappings,
    customers,
    external_tickets,
    outbox,
    partner_channels,
    sites,
    tickets,
)
from collector.secretbox import SecretBox, SecretError
from collector.timefmt import iso

MASK = "********"
Text = Annotated[str, Field(min_length=1, max_length=200)]
Secret = Annotated[str, Field(min_length=1, max_length=500)]
Url = Annotated[str, Field(min_length=1, max_length=2000)]
StatusName = Annotated[str, Field(min_length=1, max_length=100)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
ChannelType = Literal["connectwise", "autotask", "halo", "teams", "slack", "pagerduty"]
PSA_TYPES = ("connectwise", "autotask", "halo")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Routing(_In):
    """Which tickets reach the channel: every list left out (or null) takes all."""

    severities: list[Literal["warning", "critical"]] | None = Field(default=None, max_length=2)
    customers: list[Annotated[str, Field(max_length=36)]] | None = Field(
        default=None, max_length=1000
    )
    rules: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None, max_length=200)

    def takes(self, severity: str, customer_id: str, rule: str) -> bool:
        return (
            (self.severities is None or severity in self.severities)
            and (self.customers is None or customer_id in self.customers)
            and (self.rules is None or rule in self.rules)
        )


class _Channel(_In):
    name: Text
    enabled: bool = True
    routing: Routing = Field(default_factory=Routing)


class ConnectWise(_Channel):
    """ConnectWise PSA: `url` is the API base (…/v4_6_release/apis/3.0)."""

    type: Literal["connectwise"]
    url: Url
    company: Text  # the login company id
    client_id: Text  # the `clientId` header of the integration
    public_key: Secret
    private_key: Secret
    board: Text
    status_new: StatusName = "New"
    status_closed: StatusName = "Closed"
    status_reopened: StatusName = "New"


class Autotask(_Channel):
    """Autotask: the zone is discovered for `username` at `zone_url`."""

    type: Literal["autotask"]
    zone_url: Url = "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation"
    username: Text
    integration_code: Secret
    secret: Secret
    queue_id: Id | None = None
    priority: Id = 2
    status_new: Id = 1
    status_closed: Id = 5
    status_reopened: Id = 1


class Halo(_Channel):
    """HaloPSA: OAuth2 client credentials at `auth_url`/token, the API at `api_url`/api."""

    type: Literal["halo"]
    api_url: Url
    auth_url: Url
    client_id: Text
    client_secret: Secret
    tenant: Annotated[str, Field(max_length=200)] = ""
    tickettype_id: Id = 1
    status_closed: Id = 9
    status_reopened: Id = 1


class Teams(_Channel):
    """Microsoft Teams: a Workflows webhook (its URL is the credential)."""

    type: Literal["teams"]
    url: Url


class Slack(_Channel):
    """Slack: an incoming webhook (its URL is the credential)."""

    type: Literal["slack"]
    url: Url


class PagerDuty(_Channel):
    """PagerDuty Events API v2."""

    type: Literal["pagerduty"]
    url: Url = "https://events.pagerduty.com/v2/enqueue"
    routing_key: Annotated[str, Field(min_length=32, max_length=32)]


ChannelIn = Annotated[
    ConnectWise | Autotask | Halo | Teams | Slack | PagerDuty, Field(discriminator="type")
]
MODELS: dict[str, type[_Channel]] = {
    "connectwise": ConnectWise, "autotask": Autotask, "halo": Halo, "teams": Teams,
    "slack": Slack, "pagerduty": PagerDuty,
}  # fmt: skip
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "connectwise": ("public_key", "private_key"),
    "autotask": ("integration_code", "secret"),
    "halo": ("client_secret",),
    "teams": ("url",),
    "slack": ("url",),
    "pagerduty": ("routing_key",),
}
URL_FIELDS = ("url", "zone_url", "api_url", "auth_url")
COMMON = ("name", "enabled", "routing", "type")


class ChannelPatch(_In):
    """Fields to change; credentials left out keep their stored values. The type cannot
    change (delete the channel and create another)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _bounded(self) -> ChannelPatch:
        extra = self.model_extra or {}
        if len(extra) > 30:
            raise ValueError("too many fields")
        if "type" in extra:
            raise ValueError("type cannot change: delete the channel and create another")
        return self


class MappingIn(_In):
    """A customer's or site's ids in the PSA (what each PSA needs: ConnectWise `company`
    (identifier) and optionally `board`; Autotask `company_id` and optionally `queue_id`;
    Halo `client_id` and `site_id`)."""

    company: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    board: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    company_id: Id | None = None
    queue_id: Id | None = None
    client_id: Id | None = None
    site_id: Id | None = None

    @model_validator(mode="after")
    def _some(self) -> MappingIn:
        if not self.model_dump(exclude_none=True):
            raise ValueError("name at least one PSA id (company, company_id, client_id, ...)")
        return self


def _check_urls(cfg: ChannelsConfig, ch: _Channel) -> None:
    for f in URL_FIELDS:
        url = getattr(ch, f, None)
        if url is None:
            continue
        problem = url_problem(cfg, url)
        if problem:
            raise Invalid(f"{f}: the URL {problem}")


def _split(ch: _Channel) -> tuple[dict[str, Any], dict[str, Any]]:
    data = ch.model_dump(exclude={"name", "enabled", "routing", "type"})
    secret_names = SECRET_FIELDS[ch.type]  # type: ignore[attr-defined]
    secrets = {k: data.pop(k) for k in secret_names}
    return data, secrets


def _need_box(box: SecretBox | None) -> SecretBox:
    if box is None:
        raise Conflict(
            "this collector has no master key for channel credentials: the operator sets "
            "channels.master_keys or QOS_SCOUT_MASTER_KEYS (docs/operations.md)"
        )
    return box


def _out(r: Any) -> dict[str, Any]:
    """A channel as the API shows it: credentials masked, never their values."""
    d = {
        "id": r.id, "name": r.name, "type": r.type, "enabled": r.enabled,
        "routing": r.routing, **r.settings,
        "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
    }  # fmt: skip
    for k in SECRET_FIELDS.get(r.type, ()):
        d[k] = MASK
    return d


def _row(conn: sa.Connection, partner_id: str, channel_id: str) -> Any:
    r = conn.execute(
        sa.select(partner_channels).where(
            partner_channels.c.id == channel_id, partner_channels.c.partner_id == partner_id
        )
    ).first()
    if r is None:
        raise NotFound(f"channel {channel_id} not found")
    return r


def _check_customers(conn: sa.Connection, partner_id: str, routing: Routing) -> None:
    for cid in routing.customers or ():
        found = conn.execute(
            sa.select(customers.c.id).where(
                customers.c.id == cid, customers.c.partner_id == partner_id
            )
        ).first()
        if found is None:
            raise Invalid(f"routing.customers: customer {cid} not found")


def _name_taken(conn: sa.Connection, partner_id: str, name: str, but: str | None) -> None:
    q = sa.select(partner_channels.c.id).where(
        partner_channels.c.partner_id == partner_id, partner_channels.c.name == name
    )
    other = conn.execute(q).scalar()
    if other is not None and other != but:
        raise Conflict(f"a channel named {name!r} exists already")


def create(
    conn: sa.Connection, cfg: ChannelsConfig, box: SecretBox | None, partner_id: str,
    ch: _Channel, now: float,
) -> dict[str, Any]:  # fmt: skip
    _check_urls(cfg, ch)
    box = _need_box(box)
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(partner_channels)
        .where(partner_channels.c.partner_id == partner_id)
    ).scalar_one()
    if count >= cfg.max_per_partner:
        raise Conflict(f"a partner may have at most {cfg.max_per_partner} channels")
    _check_customers(conn, partner_id, ch.routing)
    _name_taken(conn, partner_id, ch.name, None)
    settings, secrets = _split(ch)
    cid = new_id()
    conn.execute(
        partner_channels.insert().values(
            id=cid, partner_id=partner_id, name=ch.name, type=ch.type,  # type: ignore[attr-defined]
            enabled=ch.enabled, settings=settings, secret=box.seal(secrets),
            routing=ch.routing.model_dump(), created_at=now, updated_at=now,
        )
    )  # fmt: skip
    return get(conn, partner_id, cid)


def get(conn: sa.Connection, partner_id: str, channel_id: str) -> dict[str, Any]:
    """The channel, with its deliveries not made yet: `pending` (due or retrying), `dead`
    (given up after outbox.max_attempts) and the `last_error` of the newest of them."""
    out = _out(_row(conn, partner_id, channel_id))
    q = (
        sa.select(outbox.c.state, outbox.c.last_error)
        .where(outbox.c.state.in_(("pending", "dead")), outbox.c.channel == channel_key(channel_id))
        .order_by(outbox.c.id.desc())
    )
    rows = conn.execute(q).all()
    out["deliveries"] = {
        "pending": sum(1 for r in rows if r.state == "pending"),
        "dead": sum(1 for r in rows if r.state == "dead"),
        "last_error": next((r.last_error for r in rows if r.last_error), None),
    }
    return out


def list_(conn: sa.Connection, partner_id: str) -> list[dict[str, Any]]:
    q = (
        sa.select(partner_channels)
        .where(partner_channels.c.partner_id == partner_id)
        .order_by(partner_channels.c.name)
    )
    return [_out(r) for r in conn.execute(q)]


def update(
    conn: sa.Connection, cfg: ChannelsConfig, box: SecretBox | None, partner_id: str,
    channel_id: str, changes: dict[str, Any], now: float,
) -> dict[str, Any]:  # fmt: skip
    r = _row(conn, partner_id, channel_id)
    box = _need_box(box)
    try:
        stored = box.open(r.secret)
    except SecretError:
        stored = {}  # sealed with a key no longer configured: the patch must bring them anew
    merged = {
        "type": r.type, "name": r.name, "enabled": r.enabled, "routing": r.routing,
        **r.settings, **stored,
    }  # fmt: skip
    for k, v in changes.items():
        if k in SECRET_FIELDS.get(r.type, ()) and v == MASK:
            continue  # the masked value sent back as it was shown: unchanged
        merged[k] = v
    try:
        ch = MODELS[r.type].model_validate(merged)
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, root=None, strip_value_error=True)) from None
    _check_urls(cfg, ch)
    _check_customers(conn, partner_id, ch.routing)
    _name_taken(conn, partner_id, ch.name, channel_id)
    settings, secrets = _split(ch)
    conn.execute(
        partner_channels.update()
        .where(partner_channels.c.id == channel_id)
        .values(
            name=ch.name, enabled=ch.enabled, settings=settings, secret=box.seal(secrets),
            routing=ch.routing.model_dump(), updated_at=now,
        )
    )  # fmt: skip
    return get(conn, partner_id, channel_id)


def delete(conn: sa.Connection, partner_id: str, channel_id: str) -> None:
    _row(conn, partner_id, channel_id)
    conn.execute(channel_mappings.delete().where(channel_mappings.c.channel_id == channel_id))
    conn.execute(partner_channels.delete().where(partner_channels.c.id == channel_id))


def rotate_all(conn: sa.Connection, box: SecretBox) -> int:
    """Every channel's secrets re-encrypted with the first master key (one transaction:
    all or none); returns how many."""
    rows = conn.execute(sa.select(partner_channels.c.id, partner_channels.c.secret)).all()
    for cid, token in rows:
        conn.execute(
            partner_channels.update()
            .where(partner_channels.c.id == cid)
            .values(secret=box.rotate(token))
        )
    return len(rows)


# -- mappings --------------------------------------------------------------------------


def _scope_is_partners(conn: sa.Connection, partner_id: str, scope_id: str) -> None:
    for table in (customers, sites):
        found = conn.execute(
            sa.select(table.c.id).where(table.c.id == scope_id, table.c.partner_id == partner_id)
        ).first()
        if found is not None:
            return
    raise NotFound(f"customer or site {scope_id} not found")


def list_mappings(conn: sa.Connection, partner_id: str, channel_id: str) -> list[dict[str, Any]]:
    _row(conn, partner_id, channel_id)
    q = (
        sa.select(channel_mappings)
        .where(channel_mappings.c.channel_id == channel_id)
        .order_by(channel_mappings.c.scope_id)
    )
    return [
        {"scope_id": m.scope_id, "values": m.values, "updated_at": iso(m.updated_at)}
        for m in conn.execute(q)
    ]


def put_mapping(
    conn: sa.Connection, partner_id: str, channel_id: str, scope_id: str, m: MappingIn,
    now: float,
) -> dict[str, Any]:  # fmt: skip
    r = _row(conn, partner_id, channel_id)
    if r.type not in PSA_TYPES:
        raise Invalid(f"a {r.type} channel takes no PSA mapping")
    _scope_is_partners(conn, partner_id, scope_id)
    values = m.model_dump(exclude_none=True)
    key = (channel_mappings.c.channel_id == channel_id, channel_mappings.c.scope_id == scope_id)
    if conn.execute(sa.select(channel_mappings.c.scope_id).where(*key)).first() is None:
        conn.execute(
            channel_mappings.insert().values(
                channel_id=channel_id, scope_id=scope_id, values=values, updated_at=now
            )
        )
    else:
        conn.execute(channel_mappings.update().where(*key).values(values=values, updated_at=now))
    return {"scope_id": scope_id, "values": values, "updated_at": iso(now)}


def delete_mapping(conn: sa.Connection, partner_id: str, channel_id: str, scope_id: str) -> None:
    _row(conn, partner_id, channel_id)
    res = conn.execute(
        channel_mappings.delete().where(
            channel_mappings.c.channel_id == channel_id, channel_mappings.c.scope_id == scope_id
        )
    )
    if res.rowcount == 0:
        raise NotFound(f"no mapping for {scope_id}")


def mapping_for(
    conn: sa.Connection, channel_id: str, customer_id: str, site_id: str
) -> dict[str, Any]:
    """The PSA ids of a ticket's customer, overridden by its site's."""
    rows = {
        m.scope_id: m.values
        for m in conn.execute(
            sa.select(channel_mappings).where(
                channel_mappings.c.channel_id == channel_id,
                channel_mappings.c.scope_id.in_([customer_id, site_id]),
            )
        )
    }
    return {**rows.get(customer_id, {}), **rows.get(site_id, {})}


# -- routing (called where a ticket event becomes outbox rows) ---------------------------


def channel_key(channel_id: str) -> str:
    """The outbox `channel` of a partner channel (operator channels are named by config)."""
    return f"partner:{channel_id}"


def routed(conn: sa.Connection, partner_id: str, ticket: dict[str, Any]) -> list[str]:
    """The outbox channel keys of the partner's enabled channels that take this ticket."""
    q = sa.select(partner_channels.c.id, partner_channels.c.routing).where(
        partner_channels.c.partner_id == partner_id, partner_channels.c.enabled.is_(True)
    )
    out = []
    for cid, routing in conn.execute(q):
        r = Routing.model_validate(routing or {})
        sev, cust, rule = (str(ticket.get(k, "")) for k in ("severity", "customer_id", "rule"))
        if r.takes(sev, cust, rule):
            out.append(channel_key(cid))
    return out


def load_for_delivery(
    conn: sa.Connection, box: SecretBox | None, channel_id: str
) -> tuple[Any, dict[str, Any]] | None:
    """A channel's row and its full config (secrets opened); None when it is gone."""
    r = conn.execute(sa.select(partner_channels).where(partner_channels.c.id == channel_id)).first()
    if r is None:
        return None
    secrets = _need_box(box).open(r.secret)
    return r, {**r.settings, **secrets}


# -- the PSA tickets made of ours --------------------------------------------------------


def external_for(conn: sa.Connection, partner_id: str, ticket_id: str) -> list[dict[str, Any]]:
    """A ticket's counterparts in the partner's PSAs (for the ticket API and page)."""
    q = (
        sa.select(external_tickets, partner_channels.c.name, partner_channels.c.type)
        .join(partner_channels, partner_channels.c.id == external_tickets.c.channel_id)
        .join(tickets, tickets.c.id == external_tickets.c.ticket_id)
        .where(external_tickets.c.ticket_id == ticket_id, tickets.c.partner_id == partner_id)
        .order_by(partner_channels.c.name)
    )
    return [
        {
            "channel": r.name,
            "channel_id": r.channel_id,
            "type": r.type,
            "external_id": r.external_id or None,
            "state": r.state,
        }
        for r in conn.execute(q)
    ]


def link(conn: sa.Connection, ticket_id: str, channel_id: str) -> Any:
    return conn.execute(
        sa.select(external_tickets).where(
            external_tickets.c.ticket_id == ticket_id, external_tickets.c.channel_id == channel_id
        )
    ).first()


def link_begin(
    conn: sa.Connection, ticket_id: str, channel_id: str, reference: str, now: float
) -> None:
    conn.execute(
        external_tickets.insert().values(
            ticket_id=ticket_id, channel_id=channel_id, reference=reference, external_id="",
            state="creating", created_at=now, updated_at=now,
        )
    )  # fmt: skip


def link_set(
    conn: sa.Connection, ticket_id: str, channel_id: str, now: float, *,
    external_id: str | None = None, state: str | None = None,
) -> None:  # fmt: skip
    values: dict[str, Any] = {"updated_at": now}
    if external_id is not None:
        values["external_id"] = external_id
    if state is not None:
        values["state"] = state
    conn.execute(
        external_tickets.update()
        .where(
            external_tickets.c.ticket_id == ticket_id, external_tickets.c.channel_id == channel_id
        )
        .values(**values)
    )
