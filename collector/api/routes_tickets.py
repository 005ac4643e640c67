"""Ticket routes: list and filter, details with events and evidence, ack/resolve/comment.

The actor recorded in a ticket's events is the authenticated partner ("partner:<name>"),
never a value from the request body (a body naming `actor` is refused with a 422)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from collector import tenants, tickets
from collector.api.models import CommentIn, NoteIn
from collector.api.responses import ERRORS
from collector.api.routes_partner import PartnerDep, _read, _write
from collector.api.state import app_state
from collector.errors import Invalid

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"], responses=ERRORS)


@router.get("")
async def list_tickets(
    p: PartnerDep,
    request: Request,
    state: Literal["open", "acknowledged", "resolved"] | None = None,
    site_id: str | None = None,
    severity: Literal["warning", "critical"] | None = None,
    limit: int = 200,
) -> list[Any]:
    if not 1 <= limit <= 10_000:
        raise Invalid("limit must be between 1 and 10000")
    scope = p["principal"].customer_id

    def run(c: Any) -> list[Any]:
        rows = tickets.list_tickets(c, p["id"], state, site_id, severity, limit)
        if scope is None:
            return rows
        mine = {s["id"] for s in tenants.list_sites(c, p["id"], scope)}
        return [t for t in rows if t["site_id"] in mine]  # a customer viewer: their sites

    return await _read(app_state(request), run)


@router.get("/{ticket_id}")
async def get_ticket(p: PartnerDep, ticket_id: str, request: Request) -> dict[str, Any]:
    return await _read(app_state(request), lambda c: tickets.get_ticket(c, p["id"], ticket_id))


@router.post("/{ticket_id}/ack")
async def ack(
    p: PartnerDep, ticket_id: str, request: Request, body: NoteIn | None = None
) -> dict[str, Any]:
    st, b, actor = app_state(request), body or NoteIn(), tickets.partner_actor(p)
    return await _write(
        st, lambda c: tickets.acknowledge(c, p["id"], ticket_id, actor, b.message, st.clock())
    )


@router.post("/{ticket_id}/resolve")
async def resolve(
    p: PartnerDep, ticket_id: str, request: Request, body: NoteIn | None = None
) -> dict[str, Any]:
    st, b, actor = app_state(request), body or NoteIn(), tickets.partner_actor(p)
    cfg = st.store.config
    return await _write(
        st,
        lambda c: tickets.resolve(c, cfg, p["id"], ticket_id, actor, b.message, st.clock()),
    )


@router.post("/{ticket_id}/comments", status_code=201)
async def add_comment(
    p: PartnerDep, ticket_id: str, body: CommentIn, request: Request
) -> dict[str, Any]:
    st, actor = app_state(request), tickets.partner_actor(p)
    return await _write(
        st, lambda c: tickets.comment(c, p["id"], ticket_id, actor, body.message, st.clock())
    )
