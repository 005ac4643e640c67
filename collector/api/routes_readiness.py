"""Readiness routes: queue a site's readiness test, follow it, fetch its report, open a
ticket from it, attach gathered call info to a ticket, and read who changed a site's call
info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.wire.readiness import CallInfo
from agent.wire.report import ISSUER_KEY
from collector import audit, brand, readiness, tickets
from collector.api.responses import ERRORS
from collector.api.routes_partner import PartnerDep, _read, _write
from collector.api.state import app_state
from collector.errors import Conflict, NotFound

router = APIRouter(prefix="/api/v1", tags=["readiness"], responses=ERRORS)


class ReadinessIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(default_factory=dict, description="ReadinessOptions")
    call_info: CallInfo | None = None
    open_ticket: bool = Field(default=True, description="a failed test opens a ticket")


@router.post("/sites/{site_id}/readiness", status_code=201)
async def queue_readiness(
    p: PartnerDep, site_id: str, request: Request, body: ReadinessIn | None = None
) -> dict[str, Any]:
    """Queue the readiness suite for the site's agent; answers the test (state "queued")."""
    st, b = app_state(request), body or ReadinessIn()
    ci = b.call_info.filled() if b.call_info else None

    def run(c: Any) -> dict[str, Any]:
        job = readiness.queue(c, p["id"], site_id, b.options, ci, b.open_ticket, st.clock())
        return readiness.view(c, p["id"], job["id"])

    out = await _write(st, run)
    st.signal_jobs(site_id)
    return out


@router.get("/sites/{site_id}/readiness")
async def list_readiness(p: PartnerDep, site_id: str, request: Request) -> list[Any]:
    return await _read(app_state(request), lambda c: readiness.list_for_site(c, p["id"], site_id))


@router.get("/readiness/{job_id}")
async def get_readiness(p: PartnerDep, job_id: str, request: Request) -> dict[str, Any]:
    """Progress while it runs; the verdict, report and ticket once done."""
    return await _read(app_state(request), lambda c: readiness.view(c, p["id"], job_id))


@router.get("/readiness/{job_id}/report.html", response_class=HTMLResponse)
async def report_html(p: PartnerDep, job_id: str, request: Request) -> HTMLResponse:
    from agent.wire.report import to_html

    v, b = await _read(app_state(request), lambda c: _with_brand(c, p["id"], job_id))
    rep = _report(v, job_id)
    return HTMLResponse(to_html(rep, issuer=b.issuer_line()))


@router.get("/readiness/{job_id}/report.json")
async def report_json(p: PartnerDep, job_id: str, request: Request) -> JSONResponse:
    """The report's fields, and under `issued_by` the partner's brand (name, support
    contact)."""
    v, b = await _read(app_state(request), lambda c: _with_brand(c, p["id"], job_id))
    doc = _report(v, job_id).model_dump(mode="json")
    return JSONResponse({**doc, ISSUER_KEY: b.metadata()})


def _with_brand(c: Any, partner_id: str, job_id: str) -> tuple[dict[str, Any], Any]:
    return readiness.view(c, partner_id, job_id), brand.for_partner(c, partner_id)


def _report(v: dict[str, Any], job_id: str) -> Any:
    """The test's report; 409 naming the version (and the known ones) when it is of a
    report_version this collector cannot read, 404 while there is none."""
    from agent.wire.report import load_json

    if v["report_error"] is not None:
        raise Conflict(f"readiness test {job_id}: {v['report_error']}")
    if v["report"] is None:
        raise NotFound(f"readiness test {job_id} has no report yet ({v['state']})")
    return load_json(v["report"])


@router.post("/readiness/{job_id}/ticket", status_code=201)
async def ticket_from_readiness(p: PartnerDep, job_id: str, request: Request) -> dict[str, Any]:
    """Open (or return) the ticket for a failed or warned test, with the report attached."""
    st = app_state(request)
    cfg = st.store.config
    actor = tickets.partner_actor(p)
    tid = await _write(
        st, lambda c: readiness.open_ticket(c, cfg, p["id"], job_id, st.clock(), actor)
    )
    return {"ticket_id": tid}


@router.get("/sites/{site_id}/call_info/events")
async def site_call_info_events(
    p: PartnerDep, site_id: str, request: Request, limit: int = Query(200, ge=1, le=1000)
) -> list[Any]:
    """Who changed the site's call info (the authenticated credential: `partner:<name>` on
    the API, `web:<name>` on the site page), when, and the call info before and after;
    newest first."""
    return await _read(
        app_state(request), lambda c: audit.list_site_events(c, p["id"], site_id, limit)
    )


@router.put("/tickets/{ticket_id}/call_info")
async def ticket_call_info(
    p: PartnerDep, ticket_id: str, body: CallInfo, request: Request
) -> dict[str, Any]:
    """Gathered call info (user, numbers, time, firewall, circuit) for a ticket; the event
    names the authenticated partner as its actor (a body naming `actor` is a 422)."""
    st, actor = app_state(request), tickets.partner_actor(p)
    return await _write(
        st,
        lambda c: readiness.add_ticket_call_info(c, p["id"], ticket_id, body, actor, st.clock()),
    )
