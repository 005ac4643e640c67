"""One delivery of an outbox row to a partner's channel (PSA, chat, paging), and the
channel test a partner runs from the API."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from collector import channels, chat, psa
from collector.config import CollectorConfig
from collector.egress import Egress
from collector.messages import Message, build_message
from collector.notifiers import DeliveryError
from collector.schema import partners
from collector.secretbox import SecretBox, SecretError
from collector.store import Store

log = logging.getLogger(__name__)
CHAT = {"teams": chat.send_teams, "slack": chat.send_slack, "pagerduty": chat.send_pagerduty}


def _partner_name(conn: sa.Connection, partner_id: str) -> str:
    """Who a message is from: the partner's brand name (the partner's own name without one)."""
    from collector import brand

    if conn.execute(sa.select(partners.c.id).where(partners.c.id == partner_id)).first() is None:
        return ""
    return brand.for_partner(conn, partner_id).name


def _load(store: Store, box: SecretBox | None, channel_id: str) -> tuple[Any, dict[str, Any], str]:
    try:
        with store.read() as conn:
            loaded = channels.load_for_delivery(conn, box, channel_id)
            if loaded is None:
                return None, {}, ""
            return loaded[0], loaded[1], _partner_name(conn, loaded[0].partner_id)
    except SecretError as exc:
        raise DeliveryError(str(exc)) from None


def deliver_partner(
    store: Store, config: CollectorConfig, box: SecretBox | None, channel_id: str,
    payload: dict[str, Any], clock: Any, delivery: str = "",
) -> str:  # fmt: skip
    """Deliver one ticket event (outbox row `delivery`); returns "sent" or "skipped"
    (channel deleted or disabled since the row was written). DeliveryError: the outbox
    retries."""
    if box is None:
        raise DeliveryError("no master key configured: the channel's credentials are sealed")
    row, cfg, sender = _load(store, box, channel_id)
    if row is None or not row.enabled:
        return "skipped"
    m = build_message(payload, sender, config.channels.portal_url, delivery)
    with Egress(config.channels) as eg:
        if row.type in CHAT:
            CHAT[row.type](eg, cfg, m)
            return "sent"
        client = psa.client_for(row.type, eg, cfg, channel_id)
        t = payload.get("ticket", {})
        with store.read() as conn:
            mapping = channels.mapping_for(
                conn, channel_id, str(t.get("customer_id", "")), str(t.get("site_id", ""))
            )
        psa.deliver_psa(client, _links(store, str(t.get("id")), channel_id, clock), m, mapping)
    return "sent"


def _links(store: Store, ticket_id: str, channel_id: str, clock: Any) -> psa.Links:
    def get() -> Any:
        with store.read() as conn:
            return channels.link(conn, ticket_id, channel_id)

    def begin(ref: str) -> None:
        with store.write() as conn:
            channels.link_begin(conn, ticket_id, channel_id, ref, clock())

    def set_(**kw: Any) -> None:
        with store.write() as conn:
            channels.link_set(conn, ticket_id, channel_id, clock(), **kw)

    return psa.Links(get=get, begin=begin, set=set_)


def test_channel(
    store: Store, config: CollectorConfig, box: SecretBox | None, partner_id: str,
    channel_id: str, now_iso: str,
) -> dict[str, Any]:  # fmt: skip
    """Send a test message (chat, paging) or search the PSA for a test reference (proves
    the URL and the credentials, creates nothing); the answer says what happened."""
    with store.read() as conn:
        channels.get(conn, partner_id, channel_id)  # NotFound for another partner's
    try:
        if box is None:
            raise DeliveryError("no master key configured: the channel's credentials are sealed")
        row, cfg, sender = _load(store, box, channel_id)
        if row is None:
            raise DeliveryError("the channel was deleted")
        m = Message(
            event="test", ticket_id="test", severity="warning",
            title=f"qos-scout test message for {row.name}",
            text=f"A test of the channel {row.name} at {now_iso} ({sender}).",
            link=config.channels.portal_url, sender=sender, site="test",
        )  # fmt: skip
        with Egress(config.channels) as eg:
            if row.type in CHAT:
                CHAT[row.type](eg, cfg, m)
            else:
                psa.client_for(row.type, eg, cfg, channel_id).find(psa.reference("test"))
    except DeliveryError as exc:
        log.info("channel test of %s failed: %s", channel_id, exc)
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "error": None}
